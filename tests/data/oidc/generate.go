// Regenerates the go-* fixtures with kube-apiserver's own code (k8s.io/kubernetes v1.36.3):
// the key file is read with keyutil.ParsePublicKeysPEM as --service-account-key-file is, the
// documents come from serviceaccount.NewOpenIDMetadataProvider, and the tokens from
// serviceaccount.JWTTokenGenerator. The keys are fresh throwaway keys for tests only.
//
//	mkdir /tmp/gen && cp tools/kube/go.mod tools/kube/go.sum tests/data/oidc/generate.go /tmp/gen
//	cd /tmp/gen && sed -i 's#^module .*#module example.invalid/gen#' go.mod && go run generate.go
//	cp /tmp/gen/go-* tests/data/oidc/

//go:build ignore

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"gopkg.in/go-jose/go-jose.v2/jwt"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/kubernetes/pkg/serviceaccount"
)

const issuer = "https://oidc.example.com/cluster"

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	must(err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must(err)
	var pemOut []byte
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	must(err)
	pemOut = append(pemOut, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})...)
	p384DER, err := x509.MarshalECPrivateKey(p384)
	must(err)
	pemOut = append(pemOut, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER})...)
	p521DER, err := x509.MarshalPKIXPublicKey(&p521.PublicKey)
	must(err)
	pemOut = append(pemOut, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p521DER})...)
	must(os.WriteFile("go-keys.pem", pemOut, 0o600))
	// Read back exactly as kube-apiserver reads --service-account-key-file.
	pubs, err := keyutil.ParsePublicKeysPEM(pemOut)
	must(err)
	getter, err := serviceaccount.StaticPublicKeysGetter(pubs)
	must(err)
	p, err := serviceaccount.NewOpenIDMetadataProvider(issuer, issuer+"/openid/v1/jwks", "", getter)
	must(err)
	cfg, _ := p.GetConfigJSON()
	ks, _ := p.GetKeysetJSON()
	must(os.WriteFile("go-openid-configuration.json", cfg, 0o644))
	must(os.WriteFile("go-jwks.json", ks, 0o644))
	now := time.Unix(1900000000, 0)
	tokens := ""
	for _, k := range []interface{}{rsaKey, p384, p521} {
		gen, err := serviceaccount.JWTTokenGenerator(issuer, k)
		must(err)
		tok, err := gen.GenerateToken(context.Background(), &jwt.Claims{
			Subject:  "system:serviceaccount:default:app",
			Audience: jwt.Audience{"sts.amazonaws.com"},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(time.Hour)),
		}, map[string]interface{}{"kubernetes.io": map[string]interface{}{"namespace": "default", "serviceaccount": map[string]string{"name": "app", "uid": "00000000-0000-0000-0000-000000000001"}}})
		must(err)
		tokens += tok + "\n"
	}
	must(os.WriteFile("go-tokens.txt", []byte(tokens), 0o644))
	fmt.Println("ok")
}
