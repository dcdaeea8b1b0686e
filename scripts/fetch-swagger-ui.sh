#!/usr/bin/env bash
# Refreshes the Swagger UI files that `/docs` serves (api/static/swagger-ui/, compiled
# into the binary) from the npm registry's swagger-ui-dist package. The files are
# committed, so a build needs no network; run this only to move to another version:
# set VERSION and INTEGRITY (the registry's `dist.integrity` for that version).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=5.35.0
INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
DEST=api/static/swagger-ui
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
curl -fsSL "https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-$VERSION.tgz" -o "$TMP/package.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TMP/package.tgz" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
    echo "swagger-ui-dist $VERSION: integrity $GOT, expected $INTEGRITY" >&2
    exit 1
fi
tar -xzf "$TMP/package.tgz" -C "$TMP"
mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    cp "$TMP/package/$f" "$DEST/$f"
done
printf '%s' "$VERSION" > "$DEST/VERSION"
echo "Swagger UI $VERSION → $DEST (rebuild medledger to serve it)"
