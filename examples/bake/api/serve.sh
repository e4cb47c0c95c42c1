#!/bin/sh
# Prints the greeting the build stage wrote for this platform.
cat /etc/greeting
