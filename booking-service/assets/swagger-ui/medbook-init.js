// Starts Swagger UI on this service's own OpenAPI document, and on nothing else.
//
// - `url` is fixed and same-origin; `queryConfigEnabled: false` makes Swagger UI ignore
//   the page's query, so `?url=` or `?configUrl=` cannot swap in another site's document
//   (CVE-2021-46708 family), whose "Authorize" would send a token wherever it points.
// - `validatorUrl: null`: no badge image from validator.swagger.io (it would tell a third
//   party where our document is; the page's CSP would block it anyway).
// - No StandaloneLayout: its top bar is a box for loading any URL.
// - Tokens entered under "Authorize" stay in memory (`persistAuthorization: false`).
// The page's Content-Security-Policy (src/transport/http/swagger.rs) is the second
// line: connect-src 'self' keeps the browser from fetching any other origin.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  queryConfigEnabled: false,
  validatorUrl: null,
  deepLinking: true,
  persistAuthorization: false,
  withCredentials: false,
});
