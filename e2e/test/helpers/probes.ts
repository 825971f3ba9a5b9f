// Raw gRPC probes of a manager's one port: a generic grpc-js client with identity serializers
// (the bytes sent are exactly the bytes given), every method of every service the port serves
// taken from the generated service definitions, and the certificates a probe presents: a node's
// own from its state dir, one from a join token, one from another cluster's CA, an expired one
// signed by this cluster's CA, a self-signed one.
import { createPrivateKey, createPublicKey, X509Certificate, webcrypto } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CaService, ControlService, DispatcherService, NodeCaService, NodeCertificateStatusResponse_State, RaftMembershipService } from '@swarmd/proto';
import { NodeCertificateStatusRequest, NodeCertificateStatusResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse, NodeRole } from '@swarmd/proto';
import { ClusterCa, createKeyAndCsr, EC_ALG, expectServerRole, x509, type CertRole, type TlsMaterial } from '@swarmd/manager';
import { RaftTransportService } from 'raft-ts/pb/raft/raft';

/** A method as the generated definitions describe it. */
export interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** Every service on a manager's TCP port (start-manager.ts: raft-ts's transport, RaftMembership, createManagerApi). */
export const PORT_SERVICES: Readonly<Record<string, Readonly<Record<string, MethodDef>>>> = {
  Control: ControlService,
  Dispatcher: DispatcherService,
  Ca: CaService,
  NodeCa: NodeCaService,
  RaftMembership: RaftMembershipService,
  RaftTransport: RaftTransportService,
};

/** Every public method of the port, from the generated definitions. */
export function everyMethod(): MethodDef[] {
  return Object.values(PORT_SERVICES).flatMap((s) => Object.values(s));
}

/** A client certificate (and key), or none. */
export interface ClientCert {
  certPem: string;
  keyPem: string;
}

export interface Outcome {
  code: grpc.status;
  details: string;
  /** The first response message (unary answer, or the first streamed one). */
  response?: Buffer;
}

const identity = (b: Buffer): Buffer => b;

/** A raw client of a manager at `addr` trusting the cluster CA `caPem`, presenting `cert` (if any). */
export function rawClient(addr: string, caPem: string, cert?: ClientCert): grpc.Client {
  const creds = cert
    ? grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem))
    : grpc.credentials.createSsl(Buffer.from(caPem));
  return new grpc.Client(addr, creds, { ...expectServerRole('swarm-manager'), 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
}

/**
 * Calls `m` with `messages` as they are (a unary or server-streaming call sends the first; a
 * client stream writes each, then ends). Resolves with the status, or OK and the first answer
 * (a server stream is cancelled once it answered).
 */
export function callRaw(client: grpc.Client, m: MethodDef, messages: Buffer[], timeoutMs = 15_000): Promise<Outcome> {
  const opts: grpc.CallOptions = { deadline: Date.now() + timeoutMs };
  const md = new grpc.Metadata();
  return new Promise((resolve) => {
    let done = false;
    const settle = (o: Outcome) => {
      if (!done) {
        done = true;
        resolve(o);
      }
    };
    const fromError = (e: grpc.ServiceError) => settle({ code: e.code, details: e.details });
    const unaryDone = (e: grpc.ServiceError | null, r?: Buffer) => (e ? fromError(e) : settle({ code: grpc.status.OK, details: '', ...(r ? { response: r } : {}) }));
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, identity, identity, messages[0] ?? Buffer.alloc(0), md, opts, unaryDone);
    } else if (!m.requestStream) {
      const s = client.makeServerStreamRequest(m.path, identity, identity, messages[0] ?? Buffer.alloc(0), md, opts);
      s.on('data', (r: Buffer) => {
        settle({ code: grpc.status.OK, details: '', response: r });
        s.cancel();
      });
      s.on('error', fromError);
      s.on('status', (st: grpc.StatusObject) => settle({ code: st.code, details: st.details }));
    } else if (!m.responseStream) {
      const w = client.makeClientStreamRequest(m.path, identity, identity, md, opts, unaryDone);
      for (const b of messages) w.write(b);
      w.end();
    } else {
      const s = client.makeBidiStreamRequest(m.path, identity, identity, md, opts);
      s.on('data', (r: Buffer) => {
        settle({ code: grpc.status.OK, details: '', response: r });
        s.cancel();
      });
      s.on('error', fromError);
      s.on('status', (st: grpc.StatusObject) => settle({ code: st.code, details: st.details }));
      for (const b of messages) s.write(b);
      s.end();
    }
  });
}

/** The name of a status code, for messages. */
export const codeName = (c: grpc.status): string => grpc.status[c] ?? String(c);

/** A host's TLS material from its state dir (DIR/certs: ca.pem, node.pem, node-key.pem). */
export async function stateDirTls(stateDir: string): Promise<TlsMaterial> {
  const d = join(stateDir, 'certs');
  const [caCertPem, certPem, keyPem] = await Promise.all(['ca.pem', 'node.pem', 'node-key.pem'].map((f) => readFile(join(d, f), 'utf8')));
  return { caCertPem: caCertPem, certPem: certPem, keyPem: keyPem };
}

/** CN, OU and O of a certificate. */
export function subjectOf(certPem: string): { cn: string; ou: string; o: string } {
  const s = new X509Certificate(certPem).subject;
  const f = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(s)?.[1] ?? '';
  return { cn: f('CN'), ou: f('OU'), o: f('O') };
}

/**
 * The cluster CA's private key, as a manager keeps it: in the replicated store, so in plain bytes
 * in its Raft WAL and snapshots under DIR/raft. Found by matching the CA certificate's public key.
 */
export async function clusterCaKeyPem(stateDir: string, caPem: string): Promise<string> {
  const want = new X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else files.push(join(d, e.name));
    }
  };
  await walk(join(stateDir, 'raft'));
  for (const f of files) {
    const text = (await readFile(f)).toString('latin1');
    for (const m of text.matchAll(/-----BEGIN PRIVATE KEY-----[A-Za-z0-9+/=\r\n]+-----END PRIVATE KEY-----\n?/g)) {
      try {
        const pub = createPublicKey(createPrivateKey(m[0])).export({ type: 'spki', format: 'der' });
        if (pub.equals(want)) return m[0];
      } catch {
        /* another key, or a torn copy */
      }
    }
  }
  throw new Error(`no private key of the cluster CA in ${join(stateDir, 'raft')} (${files.length} files)`);
}

/** A certificate of `role` for `nodeId` signed by `ca`, valid from `now` for `expiryMs`. */
export async function certFrom(ca: ClusterCa, role: CertRole, nodeId: string, now: number, expiryMs: number): Promise<ClientCert> {
  const { keyPem, csrPem } = await createKeyAndCsr();
  const { certPem } = await ca.issueNodeCertificate(csrPem, role, nodeId, { now, expiryMs });
  return { certPem, keyPem };
}

/** A self-signed certificate whose subject claims `role` for `nodeId` in `clusterId`. */
export async function selfSignedCert(role: CertRole, nodeId: string, clusterId: string): Promise<ClientCert> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify']));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${nodeId}, OU=${role}, O=${clusterId}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: EC_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: role }, { type: 'dns', value: nodeId }]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
  return { certPem: cert.toString('pem'), keyPem };
}

/**
 * What `swarmd join` does first: a key and CSR, `NodeCa.IssueNodeCertificate` with `token` (no
 * client certificate), then `NodeCertificateStatus` until ISSUED. Rejects with the gRPC error.
 */
export async function certByToken(addr: string, caPem: string, token: string): Promise<ClientCert & { nodeId: string }> {
  const client = rawClient(addr, caPem);
  try {
    const { keyPem, csrPem } = await createKeyAndCsr();
    const req = IssueNodeCertificateRequest.fromPartial({ csrPem: Buffer.from(csrPem), token, role: NodeRole.NODE_ROLE_WORKER, advertiseAddr: '' });
    const issued = await callRaw(client, NodeCaService.issueNodeCertificate, [Buffer.from(IssueNodeCertificateRequest.encode(req).finish())]);
    if (issued.code !== grpc.status.OK) throw Object.assign(new Error(`IssueNodeCertificate: ${codeName(issued.code)}: ${issued.details}`), issued);
    const { nodeId } = IssueNodeCertificateResponse.decode(issued.response ?? Buffer.alloc(0));
    for (let i = 0; i < 100; i++) {
      const st = await callRaw(client, NodeCaService.nodeCertificateStatus, [Buffer.from(NodeCertificateStatusRequest.encode({ nodeId }).finish())]);
      if (st.code !== grpc.status.OK) throw Object.assign(new Error(`NodeCertificateStatus: ${codeName(st.code)}: ${st.details}`), st);
      const r = NodeCertificateStatusResponse.decode(st.response ?? Buffer.alloc(0));
      if (r.state === NodeCertificateStatusResponse_State.ISSUED && r.certificatePem) return { nodeId, certPem: r.certificatePem, keyPem };
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`the certificate of node ${nodeId} was never issued`);
  } finally {
    client.close();
  }
}
