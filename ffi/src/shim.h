/* The DPDK surface tandem's port layer uses, plus exported wrappers for static inlines. */
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_errno.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ethdev.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>

uint16_t tandem_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t tandem_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *tandem_pktmbuf_alloc(struct rte_mempool *mp);
void tandem_pktmbuf_free(struct rte_mbuf *m);
void tandem_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n);
unsigned int tandem_lcore_id(void);
int tandem_errno(void);
uint64_t tandem_rdtsc(void);
void tandem_prefetch0(const void *p);
