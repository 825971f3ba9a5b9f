/**
 * Connections tracked toward endpoints that left a load-balancing table (pure; the VIP tables
 * and the routing mesh use it). The NAT chains see only a connection's first packet, so a
 * connection whose SYN its endpoint never answered (a full accept queue on a loaded host, or an
 * endpoint about to stop) keeps its conntrack entry, and the client's retransmitted SYNs follow
 * it to that endpoint, even after it is gone, until the client gives up: a timeout, although
 * other endpoints are ready. When endpoints leave a table, their unanswered TCP entries
 * (SYN_SENT) are deleted, so the next retransmission is balanced again over the endpoints left;
 * established connections stay on their endpoint (it drains them before it stops). UDP entries
 * toward them go (datagrams have no drain: the next one is balanced again), as kube-proxy does.
 */

/** Endpoints in `before` and not in `after`, sorted. */
export function goneEndpoints(before: Iterable<string> | undefined, after: ReadonlySet<string>): string[] {
  return [...new Set(before ?? [])].filter((ip) => !after.has(ip)).sort();
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** `conntrack` argument lines deleting the entries above for each endpoint (malformed addresses left out). */
export function staleFlowLines(gone: readonly string[]): string[] {
  return gone.filter((ip) => IPV4.test(ip)).flatMap((ip) => [`-D -p tcp --reply-src ${ip} --state SYN_SENT`, `-D -p udp --reply-src ${ip}`]);
}
