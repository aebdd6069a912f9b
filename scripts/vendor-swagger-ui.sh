#!/usr/bin/env bash
# Vendors Swagger UI into booking-service/assets/swagger-ui/dist: the `swagger-ui-dist`
# npm package at the exact version below, checked against the checksum recorded here
# before anything is copied. booking-service embeds these files in its binary
# (src/transport/http/swagger.rs); nothing is fetched at build or run time.
#
# To update: set SWAGGER_UI_VERSION, run `npm view swagger-ui-dist@<version> dist.integrity`
# and put that value in SWAGGER_UI_INTEGRITY, run this script, check the page in a browser
# (cargo test -p booking-service --test browser) and commit dist/ with the script.
# Read the release notes first: a new version may need a new Content-Security-Policy
# source (swagger.rs) or a changed initializer (assets/swagger-ui/medbook-init.js).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

SWAGGER_UI_VERSION=5.36.0
# The tarball's sha512 exactly as npm records it (`dist.integrity`), and its sha256.
SWAGGER_UI_INTEGRITY=sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+CMOTzMmvpJRSXN7EAjfwixwmoi9ezDbLHiexC7lA9A==
SWAGGER_UI_SHA256=685a2b38b5d6eab2dbc096a8596db11cc7409cdb671d2e3bec8f9b017d0d566b

# What the page needs, and the licences that come with it. Nothing else is copied:
# not the package's own index.html and swagger-initializer.js (their inline setup reads
# the page's query), not the source maps.
FILES=(
    swagger-ui-bundle.js
    swagger-ui.css
    favicon-16x16.png
    favicon-32x32.png
    LICENSE
    NOTICE
    swagger-ui-bundle.js.LICENSE.txt
)

DEST=booking-service/assets/swagger-ui/dist

command -v npm >/dev/null || apt_install nodejs npm
command -v python3 >/dev/null || apt_install python3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "downloading swagger-ui-dist@${SWAGGER_UI_VERSION} (npm pack)"
npm pack --silent --pack-destination "$work" "swagger-ui-dist@${SWAGGER_UI_VERSION}" >/dev/null
tarball="$work/swagger-ui-dist-${SWAGGER_UI_VERSION}.tgz"
[ -f "$tarball" ] || die "npm pack did not write $tarball"

# Checked here, whatever npm checked: the pinned value is the one reviewed.
integrity="sha512-$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
[ "$integrity" = "$SWAGGER_UI_INTEGRITY" ] ||
    die "swagger-ui-dist-${SWAGGER_UI_VERSION}.tgz has integrity ${integrity}, expected ${SWAGGER_UI_INTEGRITY}; nothing copied"
echo "${SWAGGER_UI_SHA256}  ${tarball}" | sha256sum --check --quiet ||
    die "swagger-ui-dist-${SWAGGER_UI_VERSION}.tgz does not have sha256 ${SWAGGER_UI_SHA256}; nothing copied"

tar -xzf "$tarball" -C "$work"
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$work/package/package.json")
[ "$version" = "$SWAGGER_UI_VERSION" ] || die "the tarball holds version ${version}, expected ${SWAGGER_UI_VERSION}"

rm -rf "$DEST"
mkdir -p "$DEST"
for file in "${FILES[@]}"; do
    [ -f "$work/package/$file" ] || die "swagger-ui-dist@${SWAGGER_UI_VERSION} has no ${file}"
    cp "$work/package/$file" "$DEST/$file"
done
cat >"$DEST/VERSION" <<EOF
swagger-ui-dist ${SWAGGER_UI_VERSION}
${SWAGGER_UI_INTEGRITY}
sha256-hex ${SWAGGER_UI_SHA256}
written by scripts/vendor-swagger-ui.sh; do not edit these files by hand
EOF
log "vendored swagger-ui-dist ${SWAGGER_UI_VERSION} into ${DEST}: ${FILES[*]}"
