//! Quality of service on the packet path: the latency histograms each worker records into
//! (`hist`), the active probes it sends and recognises (`probe`), what the control thread
//! learned of each backend (`live`), and admission — flows per
//! backend against their limit, and the queue where new flows wait for a slot
//! (`admission`). The decisions drawn from them (health, factors, standby) are the control
//! thread's.

pub mod admission;
pub mod hist;
pub mod live;
pub mod probe;
