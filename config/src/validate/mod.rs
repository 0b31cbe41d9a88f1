//! From the schema (the file as written) to the model (what a node runs from), one section
//! at a time. Every problem found is collected with the key it concerns
//! (`service[0].backend[1].paths[0].port`), and a default stands in for a bad value so the
//! rest is still checked: `check-config` lists them all in one run.

mod bgp;
mod cluster;
mod devargs;
mod node;
mod ports;
mod qos;
mod quic;
mod services;

use crate::model::Config;
use crate::problem::{Checker, Problem};
use crate::schema;
use std::path::PathBuf;

pub(crate) fn validate(file: schema::File, problems: &mut Vec<Problem>) -> Config {
    let mut c = Checker { problems };
    let node_id = node::node_id(&mut c, &file.node);
    let eal_args = node::eal_args(&mut c, file.eal);
    let ports = ports::ports(&mut c, &file.port);
    node::mempool(&mut c, &file.mempool);
    let workers = node::workers(&mut c, &file.workers);
    let flows = node::flows(&mut c, &file.flows);
    node::control(&mut c, &file.control);
    let services = services::services(&mut c, &file.service, &ports);
    let cluster = file
        .cluster
        .as_ref()
        .map(|cl| cluster::cluster(cl, node_id, &ports, c.problems));
    if let Some(cl) = &cluster {
        services::backends_at_peers(&mut c, &services, cl);
    }
    let health = qos::health(file.health.as_ref(), c.problems);
    let qos = qos::qos(file.qos.as_ref(), c.problems);
    let metrics = file.metrics.as_ref().and_then(|m| node::metrics(&mut c, m));
    let bgp = file.bgp.as_ref().map(|b| bgp::bgp(&mut c, b));
    Config {
        node_id,
        eal_args,
        ports,
        mempool_mbufs: file.mempool.mbufs,
        mempool_cache: file.mempool.cache,
        workers,
        flows,
        control_socket: PathBuf::from(&file.control.socket),
        services,
        cluster,
        health,
        qos,
        metrics,
        bgp,
    }
}

#[cfg(test)]
mod tests;
