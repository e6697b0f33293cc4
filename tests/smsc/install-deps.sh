#!/bin/sh
# Installs what tests/smsc/smsc.pl needs (Debian's Net::SMPP; JSON::PP and Encode
# are core Perl, libjson-pp-perl only brings a newer JSON::PP). Idempotent: does
# nothing when the modules already load, so CI can call it on every run.
set -eu
if perl -MNet::SMPP -MJSON::PP -MEncode -MEncode::GSM0338 -e1 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: Net::SMPP missing and not root; run: apt-get install -y libnet-smpp-perl libjson-pp-perl" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq libnet-smpp-perl libjson-pp-perl >/dev/null
perl -MNet::SMPP -MJSON::PP -MEncode -MEncode::GSM0338 -e1
