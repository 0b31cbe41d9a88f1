/* Exported wrappers for DPDK's static-inline functions and thread-local errno, so Rust can
 * call them. Compiled with pkg-config's cflags for libdpdk. */
#include "shim.h"
#include <rte_prefetch.h>

uint16_t tandem_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t tandem_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *tandem_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void tandem_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void tandem_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n)
{
	rte_pktmbuf_free_bulk(m, n);
}

unsigned int tandem_lcore_id(void)
{
	return rte_lcore_id();
}

int tandem_errno(void)
{
	return rte_errno;
}

uint64_t tandem_rdtsc(void)
{
	return rte_rdtsc();
}

void tandem_prefetch0(const void *p)
{
	rte_prefetch0(p);
}
