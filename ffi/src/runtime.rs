//! Each node's own tokio runtime (no process-wide globals).

use crate::boundary::{Failure, FerryResult};

/// Worker threads per node: the protocol work is light and phones have few
/// cores; two keep one busy peer from stalling the rest.
const WORKERS: usize = 2;

pub(crate) fn new_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("ferry-node")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(FerryResult::Internal, format!("runtime: {e}")))
}
