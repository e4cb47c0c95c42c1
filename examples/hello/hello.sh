#!/bin/sh
# The demo app: says where it was built and where it runs.
set -e
if [ "$1" = "--check" ]; then
  test -s /app/banner
  exit 0
fi
cat /app/banner
echo "image for $(cat /app/platform) (version $APP_VERSION), $(cat /app/checked)"
echo "running on $(uname -m) as uid $(id -u)"
