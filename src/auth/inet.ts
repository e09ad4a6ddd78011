// Owns IP address arithmetic for hba matching: parsing IPv4/IPv6 text into bytes,
// CIDR and address/mask forms, the range check (PostgreSQL's pg_range_sockaddr,
// which requires the same address family), and the local interfaces that
// `samehost` / `samenet` compare against.

import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

export type IpNet = { family: 4 | 6; addr: Buffer; mask: Buffer };

function parseV4(s: string): Buffer | null {
  if (!isIPv4(s)) return null;
  return Buffer.from(s.split('.').map(Number));
}

function parseV6(text: string): Buffer | null {
  const s = text.replace(/%.*$/, ''); // zone index (fe80::1%eth0)
  if (!isIPv6(s)) return null;
  const out = Buffer.alloc(16);
  let head = s;
  let tail = '';
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = parseV4(g)!;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const h = groups(head);
  const t = groups(tail);
  h.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  t.forEach((g, i) => out.writeUInt16BE(g, 16 - (t.length - i) * 2));
  return out;
}

/** Address text → family and bytes, or null when it is not a numeric address. */
export function parseIp(s: string): { family: 4 | 6; bytes: Buffer } | null {
  const v4 = parseV4(s);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseV6(s);
  return v6 ? { family: 6, bytes: v6 } : null;
}

/**
 * The client address as hba sees it. A dual-stack listener reports IPv4 clients
 * as IPv4-mapped IPv6 (::ffff:a.b.c.d); PostgreSQL listens with IPV6_V6ONLY and
 * sees them as IPv4, so we unmap them to match the same lines it would.
 */
export function normalizeClientAddr(addr: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m ? m[1]! : addr;
}

function prefixMask(family: 4 | 6, bits: number): Buffer {
  const mask = Buffer.alloc(family === 4 ? 4 : 16);
  for (let i = 0; i < mask.length; i++) {
    const take = Math.max(0, Math.min(8, bits - i * 8));
    mask[i] = take === 0 ? 0 : (0xff << (8 - take)) & 0xff;
  }
  return mask;
}

/** "10.0.0.0/8", "::1/128"; throws Error(reason) when the text is not one. */
export function parseCidr(text: string): IpNet {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) throw new Error(`invalid IP address "${text}"`);
  const maxBits = ip.family === 4 ? 32 : 128;
  let bits = maxBits;
  if (slash >= 0) {
    const m = text.slice(slash + 1);
    bits = /^\d{1,3}$/.test(m) ? Number(m) : NaN;
    if (!(bits >= 0 && bits <= maxBits)) throw new Error(`invalid CIDR mask in address "${text}"`);
  }
  return { family: ip.family, addr: ip.bytes, mask: prefixMask(ip.family, bits) };
}

/** Address and a separate netmask field ("192.168.0.0 255.255.0.0"). */
export function parseAddrMask(addrText: string, maskText: string): IpNet {
  const ip = parseIp(addrText);
  if (!ip) throw new Error(`invalid IP address "${addrText}"`);
  const mask = parseIp(maskText);
  if (!mask) throw new Error(`invalid IP mask "${maskText}"`);
  if (mask.family !== ip.family) throw new Error(`IP address and mask do not match in "${addrText} ${maskText}"`);
  return { family: ip.family, addr: ip.bytes, mask: mask.bytes };
}

/** pg_range_sockaddr: same family, and equal under the mask. */
export function inNet(addr: string, net: IpNet): boolean {
  const ip = parseIp(addr);
  if (!ip || ip.family !== net.family) return false;
  for (let i = 0; i < net.mask.length; i++) {
    if ((ip.bytes[i]! & net.mask[i]!) !== (net.addr[i]! & net.mask[i]!)) return false;
  }
  return true;
}

/** Addresses and networks of this host's interfaces (samehost / samenet). */
export function localNets(): IpNet[] {
  const out: IpNet[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      try {
        out.push(parseAddrMask(i.address, i.netmask));
      } catch {
        // an interface we cannot parse simply matches nothing
      }
    }
  }
  return out;
}

export function isSameHost(addr: string, nets: IpNet[]): boolean {
  const full = (n: IpNet): IpNet => ({ ...n, mask: Buffer.alloc(n.mask.length, 0xff) });
  return nets.some((n) => inNet(addr, full(n)));
}

export function isSameNet(addr: string, nets: IpNet[]): boolean {
  return nets.some((n) => inNet(addr, n));
}
