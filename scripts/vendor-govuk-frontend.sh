#!/usr/bin/env bash
# Vendor GOV.UK Frontend's built stylesheet into services/web/static/govuk/ (committed; run again to upgrade).
#
# The version matches the Jinja port in pyproject.toml (govuk-frontend-jinja 4.1.0 is verified against
# GOV.UK Frontend 6.3.0). The GDS Transport font and the crown are for GOV.UK services only, so the @font-face
# rules are dropped: text falls back to the stylesheet's own stack (arial, sans-serif), as the Design System
# advises for services outside GOV.UK. No JavaScript is vendored: the web sends none (CSP).
set -euo pipefail
VERSION="${1:-6.3.0}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/services/web/static/govuk"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack "govuk-frontend@$VERSION" --silent >/dev/null && tar xzf "govuk-frontend-$VERSION.tgz")
mkdir -p "$DEST"
python3 - "$WORK/package/dist/govuk/govuk-frontend.min.css" "$DEST/govuk-frontend.min.css" "$VERSION" <<'PY'
import re, sys
css = open(sys.argv[1], encoding="utf-8").read()
css = re.sub(r"/\*#\s*sourceMappingURL=[^*]*\*/", "", css)
css = re.sub(r"@font-face\{[^}]*\}", "", css)
open(sys.argv[2], "w", encoding="utf-8").write(f"/* GOV.UK Frontend {sys.argv[3]} (MIT), fonts removed */\n" + css)
PY
cat > "$DEST/LICENSE.txt" <<LICENCE
GOV.UK Frontend $VERSION (https://github.com/alphagov/govuk-frontend), vendored by scripts/vendor-govuk-frontend.sh

The MIT License (MIT)

Copyright (c) 2016 Crown Copyright (Government Digital Service)

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and
to permit persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of
the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
IN THE SOFTWARE.
LICENCE
echo "vendored GOV.UK Frontend $VERSION into $DEST"
