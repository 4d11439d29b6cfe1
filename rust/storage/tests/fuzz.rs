//! The stable fuzz driver: a seeded mutation loop over seed inputs the engine wrote, feeding
//! the targets of `fuzz_targets` (the same functions the libFuzzer targets in `fuzz/` call).
//! Every input must come back without a panic, within `INPUT_SECONDS_MAX`, and without one
//! allocation above the bound of its target.
//!
//! `cargo test` runs a short, deterministic budget. Knobs (environment):
//! - `TIDELOG_FUZZ_SECONDS`: run each target this long instead of a fixed count (`make fuzz`).
//! - `TIDELOG_FUZZ_ITERATIONS`: inputs per target (default `DEFAULT_ITERATIONS`).
//! - `TIDELOG_FUZZ_SEED`: the mutator's seed (default 0); a failure prints the seed and the
//!   path of the saved input, and `TIDELOG_FUZZ_REPLAY=<file>` runs one saved input.
//! - `TIDELOG_FUZZ_SEEDS_OUT=<dir>` with `--ignored write_seeds`: writes the seeds as corpora
//!   for the libFuzzer targets.
//!
//! Inputs that once failed live in `tests/fuzz_regressions/<target>/` and run first, always.

mod fuzz_targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fuzz_targets::mutate::{self, Rng};
use fuzz_targets::{seeds, BatchTarget, IndexTarget, RecoveryTarget};
use tidelog_storage::limits::{DECOMPRESSED_RECORDS_BYTES_MAX, RECOVERY_READ_BUFFER_BYTES};

/// Inputs per target in the default run (about 10 s each in a debug build), unless
/// `TIDELOG_FUZZ_ITERATIONS` says otherwise.
const BATCH_ITERATIONS: u64 = 30_000;
const RECOVERY_ITERATIONS: u64 = 20_000;
const INDEX_ITERATIONS: u64 = 150_000;
/// Of the mutants, at least this fraction must pass every check (the mutator fixes CRCs and
/// keeps structure) and at least this fraction must be refused: the run explores both sides.
const ACCEPTED_FRACTION_MIN: f64 = 0.001;
const REFUSED_FRACTION_MIN: f64 = 0.05;
/// An input taking longer is a hang (debug build, shared CI machine: generous on purpose).
const INPUT_SECONDS_MAX: f64 = 5.0;
/// Mutants kept to mutate further, replacing older ones at random past this many.
const POOL_SIZE_MAX: usize = 2048;

// --- the largest single allocation, per thread ---------------------------------------------

struct Counting;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn take_largest_allocation() -> usize {
    LARGEST_ALLOCATION.with(|largest| largest.replace(0))
}

// --- the driver ------------------------------------------------------------------------------

/// Makes a mutant of an input, given the pool of inputs to splice from.
type Mutator = fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8>;

struct Spec {
    name: &'static str,
    iterations: u64,
    /// The largest single allocation an input may cause, given its length: a named limit of the
    /// engine plus a multiple of the input (files are read whole; they are the input).
    allocation_bound: fn(usize) -> usize,
    mutate: Mutator,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn regression_inputs(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(name);
    let Ok(entries) = fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
    paths.sort();
    paths.into_iter().map(|p| (p.clone(), fs::read(&p).expect("read regression input"))).collect()
}

fn save_failure(name: &str, input: &[u8], tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    fs::create_dir_all(&dir).expect("failure dir");
    let path = dir.join(format!("{name}-{tag}.bin"));
    fs::write(&path, input).expect("save failing input");
    path
}

/// Runs one input; panics (the test fails) on a crash, a hang or an allocation over the bound.
fn check_one(spec: &Spec, run: &mut dyn FnMut(&[u8]), input: &[u8], tag: &str) {
    take_largest_allocation();
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(input)));
    let seconds = started.elapsed().as_secs_f64();
    let largest = take_largest_allocation();
    let problem = match outcome {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("panicked: {message}"))
        }
        Ok(()) if seconds > INPUT_SECONDS_MAX => Some(format!("took {seconds:.1} s (hang)")),
        Ok(()) if largest > (spec.allocation_bound)(input.len()) => Some(format!(
            "allocated {largest} bytes at once, over the bound {} for a {}-byte input",
            (spec.allocation_bound)(input.len()),
            input.len()
        )),
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        let path = save_failure(spec.name, input, tag);
        panic!(
            "fuzz target {} {problem}\ninput ({} bytes) saved to {} (replay: TIDELOG_FUZZ_REPLAY={} cargo test --test fuzz {})",
            spec.name,
            input.len(),
            path.display(),
            path.display(),
            spec.name
        );
    }
}

/// Runs the target over regressions, seeds and mutants; returns the number of mutants run.
fn drive(spec: Spec, seed_inputs: Vec<Vec<u8>>, run: &mut dyn FnMut(&[u8])) -> u64 {
    if let Ok(path) = std::env::var("TIDELOG_FUZZ_REPLAY") {
        let input = fs::read(&path).expect("replay input");
        check_one(&spec, run, &input, "replay");
        return 0;
    }
    for (path, input) in regression_inputs(spec.name) {
        let tag = path.file_name().and_then(|n| n.to_str()).unwrap_or("regression").to_string();
        check_one(&spec, run, &input, &tag);
    }
    for (i, input) in seed_inputs.iter().enumerate() {
        check_one(&spec, run, input, &format!("seed-{i}"));
    }
    let seed = env_u64("TIDELOG_FUZZ_SEED").unwrap_or(0);
    let deadline = env_u64("TIDELOG_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let iterations = env_u64("TIDELOG_FUZZ_ITERATIONS").unwrap_or(spec.iterations);
    let mut rng = Rng::new(seed ^ fxhash(spec.name));
    let mut pool = seed_inputs.clone();
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        match deadline {
            Some(deadline) if Instant::now() >= deadline => break,
            None if done >= iterations => break,
            _ => {}
        }
        let parent = &pool[rng.below(pool.len())];
        let input = (spec.mutate)(&mut rng, parent, &pool);
        check_one(&spec, run, &input, &format!("seed{seed}-{done}"));
        if rng.chance(16) {
            if pool.len() < POOL_SIZE_MAX {
                pool.push(input);
            } else {
                let at = seed_inputs.len() + rng.below(POOL_SIZE_MAX - seed_inputs.len());
                pool[at] = input;
            }
        }
        done += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {}: {done} inputs in {seconds:.1} s ({:.0}/s), seed {seed}, {} seeds, 0 crashes, 0 hangs, 0 over-allocations",
        spec.name,
        done as f64 / seconds.max(1e-9),
        seed_inputs.len()
    );
    done
}

/// Prints the outcomes and checks the run reached both sides of the target's checks.
fn check_outcomes(name: &str, outcomes: &fuzz_targets::Outcomes, mutants: u64) {
    eprintln!("fuzz {name}: outcomes {outcomes:?}");
    if mutants < 1000 {
        return; // a replay or a tiny run
    }
    let total = (outcomes.accepted + outcomes.refused) as f64;
    assert!(outcomes.accepted as f64 >= ACCEPTED_FRACTION_MIN * total, "{name}: too few inputs accepted: {outcomes:?}");
    assert!(outcomes.refused as f64 >= REFUSED_FRACTION_MIN * total, "{name}: too few inputs refused: {outcomes:?}");
}

fn fxhash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Decompression may fill a buffer up to its limit, which a growing `Vec` can double.
fn decompression_bound(input: usize) -> usize {
    2 * DECOMPRESSED_RECORDS_BYTES_MAX + 8 * input
}

#[test]
fn batches() {
    let mut target = BatchTarget::default();
    let spec = Spec {
        name: "batches",
        iterations: BATCH_ITERATIONS,
        allocation_bound: decompression_bound,
        mutate: mutate::mutate_batch_input,
    };
    let mutants = drive(spec, seeds::batch_seeds(), &mut |data| target.run(data));
    check_outcomes("batches", &target.outcomes, mutants);
}

#[test]
fn recovery() {
    let mut target = RecoveryTarget::default();
    let spec = Spec {
        name: "recovery",
        iterations: RECOVERY_ITERATIONS,
        allocation_bound: decompression_bound,
        mutate: mutate::mutate_recovery_input,
    };
    let mutants = drive(spec, seeds::recovery_seeds(), &mut |data| target.run(data));
    check_outcomes("recovery", &target.outcomes, mutants);
    assert!(mutants < 1000 || target.outcomes.truncated > 0, "recovery: no torn tail was ever truncated");
}

#[test]
fn indexes() {
    let mut target = IndexTarget::default();
    let spec = Spec {
        name: "indexes",
        iterations: INDEX_ITERATIONS,
        // Index files are read whole (they are the input); nothing else scales.
        allocation_bound: |input| 8 * input + RECOVERY_READ_BUFFER_BYTES,
        mutate: mutate::mutate_index_input,
    };
    let mutants = drive(spec, seeds::index_seeds(), &mut |data| target.run(data));
    check_outcomes("indexes", &target.outcomes, mutants);
}

/// Writes the seeds as libFuzzer corpora: `TIDELOG_FUZZ_SEEDS_OUT=<dir> cargo test --test fuzz
/// -- --ignored write_seeds` (what `make fuzz` does first).
#[test]
#[ignore = "writes seed corpora for the libFuzzer targets; run by make fuzz"]
fn write_seeds() {
    let out = PathBuf::from(std::env::var("TIDELOG_FUZZ_SEEDS_OUT").expect("TIDELOG_FUZZ_SEEDS_OUT"));
    let sets =
        [("batches", seeds::batch_seeds()), ("recovery", seeds::recovery_seeds()), ("indexes", seeds::index_seeds())];
    for (name, inputs) in sets {
        let dir = out.join(name);
        fs::create_dir_all(&dir).expect("corpus dir");
        for (i, input) in inputs.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:03}")), input).expect("write seed");
        }
    }
}
