package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// credentials are the files kube-apiserver and kube-controller-manager need,
// generated fresh for each cluster so nothing secret is checked in or shared.
type credentials struct {
	caPEM          []byte // CA that signed the serving certificate; goes into the kubeconfig
	servingCert    string // kube-apiserver --tls-cert-file
	servingKey     string // kube-apiserver --tls-private-key-file
	caCert         string // CA certificate file (controller-manager --root-ca-file)
	serviceAcctKey string // RSA key that signs and verifies service account tokens
	tokenFile      string // kube-apiserver --token-auth-file
	adminToken     string // bearer token of a system:masters user
	// The aggregation layer: kube-apiserver proxies metrics.k8s.io to
	// metrics-server with this client certificate (--proxy-client-*), and
	// metrics-server trusts the user it names in headers because the
	// certificate is signed by the CA (--requestheader-client-ca-file).
	proxyClientCert, proxyClientKey string
	// metrics-server's serving certificate, for the name the aggregator
	// verifies: <service>.<namespace>.svc.
	metricsServingCert, metricsServingKey string
}

// proxyClientName is the common name of the aggregator's client certificate
// (--requestheader-allowed-names).
const proxyClientName = "front-proxy-client"

func writeCredentials(dir string) (*credentials, error) {
	notBefore := time.Now().Add(-time.Hour) // tolerate small clock differences
	notAfter := notBefore.Add(7 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localcluster-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Clients only ever reach the server on loopback.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving certificate: %w", err)
	}

	issue := func(serial int64, template *x509.Certificate, certPath, keyPath string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		template.SerialNumber, template.NotBefore, template.NotAfter = big.NewInt(serial), notBefore, notAfter
		template.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("create certificate %s: %w", template.Subject.CommonName, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		return errors.Join(
			os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
			os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	}
	proxyClientCert, proxyClientKey := filepath.Join(dir, "proxy-client.crt"), filepath.Join(dir, "proxy-client.key")
	if err := issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: proxyClientName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, proxyClientCert, proxyClientKey); err != nil {
		return nil, err
	}
	metricsServingCert, metricsServingKey := filepath.Join(dir, "metrics-server.crt"), filepath.Join(dir, "metrics-server.key")
	if err := issue(4, &x509.Certificate{
		Subject:     pkix.Name{CommonName: metricsServerName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{metricsServerName + "." + metav1.NamespaceSystem + ".svc"},
	}, metricsServingCert, metricsServingKey); err != nil {
		return nil, err
	}

	// Service account tokens are signed with RSA because every component
	// accepts RS256 without extra flags.
	serviceAccountKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}

	tokenBytes := make([]byte, 24)
	if _, err := rand.Read(tokenBytes); err != nil {
		return nil, err
	}

	creds := &credentials{
		caPEM:          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		servingCert:    filepath.Join(dir, "apiserver.crt"),
		servingKey:     filepath.Join(dir, "apiserver.key"),
		caCert:         filepath.Join(dir, "ca.crt"),
		serviceAcctKey: filepath.Join(dir, "service-account.key"),
		tokenFile:      filepath.Join(dir, "tokens.csv"),
		adminToken:     hex.EncodeToString(tokenBytes),

		proxyClientCert: proxyClientCert, proxyClientKey: proxyClientKey,
		metricsServingCert: metricsServingCert, metricsServingKey: metricsServingKey,
	}
	servingKeyDER, err := x509.MarshalECPrivateKey(servingKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		creds.caCert:         creds.caPEM,
		creds.servingCert:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER}),
		creds.servingKey:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: servingKeyDER}),
		creds.serviceAcctKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(serviceAccountKey)}),
		// token,user,uid,"group1,group2"
		creds.tokenFile: []byte(fmt.Sprintf("%s,localcluster-admin,localcluster-admin,\"system:masters\"\n", creds.adminToken)),
	}
	for path, content := range files {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			return nil, err
		}
	}
	return creds, nil
}
