//! The config loader against arbitrary text: a config or a list of problems, each naming
//! a key and saying why, never a panic; and a config that loads prints (`show config`) as
//! text that loads back to the same config.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tandem_config::Config::from_toml(text) {
        Ok(cfg) => {
            assert!(!cfg.ports.is_empty());
            let printed = cfg.to_toml();
            let again = tandem_config::Config::from_toml(&printed)
                .unwrap_or_else(|p| panic!("{p:?}\n{printed}"));
            assert_eq!(format!("{again:?}"), format!("{cfg:?}"), "{printed}");
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(!p.key.is_empty() && !p.why.is_empty(), "{p:?}");
            }
        }
    }
});
