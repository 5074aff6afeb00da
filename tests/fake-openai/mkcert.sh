#!/bin/sh
# mkcert.sh DIR: throw-away TLS material for the fake organization, made at
# test time with openssl.  Writes into DIR:
#   ca.pem                         the test CA (what clients trust)
#   server.pem, server.key         signed by the CA, for 127.0.0.1, ::1 and localhost
#   wronghost.pem, wronghost.key   signed by the CA, but for wrong.invalid only
#   untrusted.pem, untrusted.key   self-signed for 127.0.0.1/localhost (no CA vouches for it)
set -eu
dir=${1:?usage: mkcert.sh DIR}
openssl=${OPENSSL:-openssl}
mkdir -p "$dir"
cd "$dir"

# EC keys: fast to make, so every test can afford its own CA.
newkey() {
	"$openssl" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

newkey ca.key
"$openssl" req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=openai-revoke test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

sign() { # name san
	newkey "$1.key"
	"$openssl" req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
	printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" >"$1.ext"
	"$openssl" x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
sign server "IP:127.0.0.1,IP:::1,DNS:localhost"
sign wronghost "DNS:wrong.invalid"

newkey untrusted.key
"$openssl" req -x509 -new -key untrusted.key -out untrusted.pem -days 2 -subj "/CN=untrusted" \
	-addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" 2>/dev/null

rm -f ca.srl
# The CA key is not needed any more; nothing should be able to sign with it.
rm -f ca.key
