//! What the control thread has learned of each backend, handed to the packet core in the
//! services snapshot: selection weighs by it, path choice follows it.

/// What the control thread has learned about a backend since the config was read: health,
/// QoS factor, ramp-up, path health and shares. Default: healthy, full share.
#[derive(Debug, Clone)]
pub struct BackendLive {
    pub up: bool,
    /// In (0, 1]: the share of its weight the QoS selection gives it.
    pub factor: f64,
    /// In (0, 1]: slow start after coming up or being activated.
    pub ramp: f64,
    /// A standby the control thread activated.
    pub standby_active: bool,
    pub path_up: Vec<bool>,
    /// Relative path shares, 1..=1000 (empty: equal).
    pub path_share: Vec<u16>,
    pub ewma_us: u32,
}

impl Default for BackendLive {
    fn default() -> Self {
        BackendLive {
            up: true,
            factor: 1.0,
            ramp: 1.0,
            standby_active: false,
            path_up: Vec::new(),
            path_share: Vec::new(),
            ewma_us: 0,
        }
    }
}
