#!/usr/bin/env bash
# The real browser for tests/test_browser.py: Debian's chromium (Playwright drives it; it downloads no browser)
# and a small Chinese font so that screenshots are readable. The playwright package itself is pinned in pyproject.toml.
# Installs only as root with apt-get; elsewhere it says so, and the browser test skips (under CI=true it fails).
set -euo pipefail
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "WenQuanYi"; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium and fonts-wqy-microhei (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null; } ||
    echo "== apt-get failed: tests/test_browser.py will skip (under CI=true it fails)"
elif [ ! -x /usr/bin/chromium ]; then
  echo "== no /usr/bin/chromium and no root apt-get here: tests/test_browser.py will skip (sudo apt-get install chromium)"
fi
