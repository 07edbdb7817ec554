import { webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

type KeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 86_400_000;

export interface IssuedCert {
  /** PEM files, as a service's `tls: {cert, key}` names them. */
  cert: string;
  key: string;
}

/**
 * The lab's own certificate authority: made fresh for each lab, written into its directory
 * (ca.pem), and trusted only by the lab's components and clients. Its key never leaves memory.
 */
export class LabCa {
  private constructor(
    private readonly dir: string,
    private readonly keys: KeyPair,
    private readonly cert: x509.X509Certificate,
    /** The CA certificate (PEM), for clients to verify with. */
    readonly pem: string,
    /** ca.pem in the lab directory: what `--ca` takes. */
    readonly path: string,
  ) {}

  static async create(dir: string, name: string): Promise<LabCa> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: `CN=Arrow lab ${name} CA`,
      keys,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 30 * DAY),
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pem = cert.toString('pem');
    const path = join(dir, 'ca.pem');
    writeFileSync(path, pem + '\n');
    return new LabCa(dir, keys, cert, pem, path);
  }

  /** A server certificate for `host` (an IP address), written as `<name>.crt.pem` and `<name>.key.pem`. */
  async issue(name: string, host: string): Promise<IssuedCert> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
    const now = Date.now();
    const leaf = await x509.X509CertificateGenerator.create({
      subject: `CN=${host}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 30 * DAY),
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    const cert = join(this.dir, `${name}.crt.pem`);
    const key = join(this.dir, `${name}.key.pem`);
    writeFileSync(cert, leaf.toString('pem') + '\n');
    writeFileSync(key, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n', { mode: 0o600 });
    return { cert, key };
  }
}
