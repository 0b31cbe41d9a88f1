//! QoS glue under a fake clock.
