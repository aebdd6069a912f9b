//! Swagger UI in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! `fantoccini`) against the app on a real socket with a fresh database (the API tests'
//! `helpers`), beside a foreign site that serves a document of its own and counts what
//! it is asked. `./scripts/test.sh` installs Chromium and chromedriver
//! (`ensure_chromium`) and sets `MEDBOOK_TEST_CHROMIUM` and `MEDBOOK_TEST_CHROMEDRIVER`;
//! without them these tests fail, they never skip.
#![allow(
    clippy::unwrap_used, clippy::expect_used,
    // Tests index and cast freely: a panic there is a failed run.
    clippy::indexing_slicing,
)]

mod chromium;
mod foreign;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod swagger_ui;
