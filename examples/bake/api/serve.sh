#!/bin/sh
# Says which platform's image this is, then the greeting file.
echo "${GREETING} (${PLATFORM})"
cat /usr/local/share/api/greeting.txt
