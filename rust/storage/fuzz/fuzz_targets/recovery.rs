#![no_main]
//! libFuzzer driver of `RecoveryTarget` (see ../../tests/fuzz_targets/mod.rs).

#[path = "../../tests/fuzz_targets/mod.rs"]
mod targets;

use std::sync::{LazyLock, Mutex};

static TARGET: LazyLock<Mutex<targets::RecoveryTarget>> =
    LazyLock::new(|| Mutex::new(targets::RecoveryTarget::default()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    TARGET.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).run(data);
});
