// Owns the server's TLS material: reading ssl_cert_file / ssl_key_file into a
// SecureContext (TLS 1.2 or later, as PostgreSQL's default ssl_min_protocol_version),
// and the tls-server-end-point channel-binding data for SCRAM-SHA-256-PLUS: the
// hash of the server certificate, with SHA-256 unless the certificate's signature
// uses a stronger hash (RFC 5929 section 4.1; be-secure-openssl.c
// be_tls_get_certificate_hash).

import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';

export type TlsMaterial = {
  secureContext: tls.SecureContext;
  /** Channel-binding data, or null when the signature hash cannot be determined (no -PLUS then). */
  certificateHash: Buffer | null;
  /** The leaf certificate's subject and expiry, for the log. */
  subject: string;
  validTo: string;
};

/**
 * The hash algorithm of tls-server-end-point: the certificate's signature hash,
 * MD5 and SHA-1 replaced by SHA-256; null for signatures without a separate hash
 * (Ed25519, RSA-PSS), where PostgreSQL fails the exchange.
 */
export function endPointHashAlgorithm(signatureAlgorithm: string): string | null {
  const s = signatureAlgorithm.toLowerCase();
  if (/md5|sha1(?!\d)/.test(s)) return 'sha256';
  const m = /sha3-(224|256|384|512)|sha(224|256|384|512)/.exec(s);
  if (!m) return null;
  return m[1] ? `sha3-${m[1]}` : `sha${m[2]}`;
}

/** The channel-binding data of a certificate (PEM or X509Certificate). */
export function certificateHash(cert: X509Certificate): Buffer | null {
  const alg = endPointHashAlgorithm(cert.signatureAlgorithm ?? '');
  return alg ? createHash(alg).update(cert.raw).digest() : null;
}

/** The first certificate of a PEM file (the server's own; the rest is its chain). */
function leafCertificate(pem: string, file: string): X509Certificate {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error(`could not load server certificate file "${file}": no certificate found`);
  try {
    return new X509Certificate(m[0]);
  } catch (e) {
    throw new Error(`could not load server certificate file "${file}": ${(e as Error).message}`);
  }
}

/** Reads and checks the certificate and key; throws Error with PostgreSQL-like text. */
export function loadTls(certFile: string, keyFile: string): TlsMaterial {
  const read = (f: string, what: string): string => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch (e) {
      throw new Error(`could not load ${what} file "${f}": ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`);
    }
  };
  const cert = read(certFile, 'server certificate');
  const key = read(keyFile, 'private key');
  const leaf = leafCertificate(cert, certFile);
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch (e) {
    const msg = (e as Error).message;
    if (/key values mismatch/.test(msg)) throw new Error(`private key file "${keyFile}" does not match server certificate file "${certFile}"`);
    throw new Error(`could not load private key file "${keyFile}": ${msg}`);
  }
  return { secureContext, certificateHash: certificateHash(leaf), subject: leaf.subject.replaceAll('\n', ', '), validTo: leaf.validTo };
}
