//! The asynchronous C ABI (`rcni_isolator_*_async` with a completion
//! callback), called as a C host would: the callback gets a heap context,
//! records `(code, out)` and frees both. Proves the threading model (many
//! calls in flight on a bounded number of threads), a cleanup cancelling a
//! running isolate of the same container, and destroy with calls in flight.
//! Root only except the degraded-mode test. Mock plugins are shell scripts;
//! no address leaves the test's namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cni_isolator::ffi::*;
use common::*;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The answers the callbacks delivered, by call number.
#[derive(Default)]
struct Answers {
    got: Mutex<Vec<(usize, i32, String)>>,
    arrived: Condvar,
}

impl Answers {
    /// Waits until `n` answers are in (panics after `limit`).
    fn wait_for(&self, n: usize, limit: Duration) -> Vec<(usize, i32, String)> {
        let deadline = Instant::now() + limit;
        let mut got = self.got.lock().unwrap();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} callbacks after {limit:?}",
                got.len()
            );
            got = self.arrived.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }

    /// Every call number in `0..n` answered exactly once.
    fn assert_once_each(&self, n: usize) {
        let got = self.got.lock().unwrap();
        let mut count: HashMap<usize, usize> = HashMap::new();
        for (i, _, _) in got.iter() {
            *count.entry(*i).or_default() += 1;
        }
        for i in 0..n {
            assert_eq!(
                count.get(&i),
                Some(&1),
                "call {i} answered {:?} times",
                count.get(&i)
            );
        }
        assert_eq!(got.len(), n, "more answers than calls");
    }
}

/// The heap context of one call, as a C host would pass it.
struct CallContext {
    answers: Arc<Answers>,
    call: usize,
}

fn ctx(answers: &Arc<Answers>, call: usize) -> *mut c_void {
    Box::into_raw(Box::new(CallContext {
        answers: answers.clone(),
        call,
    }))
    .cast()
}

/// The completion callback: takes the context back, records the answer.
unsafe extern "C" fn done(ctx: *mut c_void, code: i32, out: *mut c_char) {
    // SAFETY: made by `ctx` above; called exactly once per call (a second
    // call would be a double free, which the tests would show).
    let ctx = unsafe { Box::from_raw(ctx.cast::<CallContext>()) };
    // SAFETY: a string from the library, freed once here.
    let text = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
    // SAFETY: as above.
    unsafe { rcni_isolator_free_string(out) };
    ctx.answers.got.lock().unwrap().push((ctx.call, code, text));
    ctx.answers.arrived.notify_all();
}

struct Handle(*mut RcniIsolator);

// SAFETY: the handle is made to be used from any thread.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

fn create(options: &serde_json::Value) -> Handle {
    let options = CString::new(options.to_string()).unwrap();
    let mut h: *mut RcniIsolator = std::ptr::null_mut();
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid string and out-pointers.
    let code = unsafe { rcni_isolator_create(options.as_ptr(), &mut h, &mut out) };
    // SAFETY: a string from the library.
    let text = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
    // SAFETY: freed once.
    unsafe { rcni_isolator_free_string(out) };
    assert_eq!(code, RCNI_OK, "{text}");
    Handle(h)
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn prepare_config(network: &[&str]) -> CString {
    cstr(&serde_json::to_string(&config_for(network)).unwrap())
}

/// The threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Samples the thread count until stopped; returns the highest seen.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadSampler {
    fn start() -> ThreadSampler {
        let (stop, max) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        ThreadSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn options(env: &Env, extra: serde_json::Value) -> serde_json::Value {
    let mut o = serde_json::json!({
        "network_cni_config_dir": env.conf,
        "network_cni_plugins_dir": env.plugins,
        "root_dir": env.root(),
        "setup_helper": env!("CARGO_BIN_EXE_cni-isolator-setup"),
        "plugin_timeout_ms": "60000",
    });
    if let (Some(o), serde_json::Value::Object(extra)) = (o.as_object_mut(), extra) {
        o.extend(extra);
    }
    o
}

/// A process is gone (or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z")
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn async_calls_answer_through_the_callback_once_in_degraded_mode() {
    let h = create(&serde_json::json!({}));
    let answers = Arc::new(Answers::default());
    let unknown = prepare_config(&["no-such-net"]);
    let (id, bad) = (cstr("\"c1\""), cstr("{not json"));
    // SAFETY: live handle, valid strings, a callback and its context.
    let codes = unsafe {
        [
            rcni_isolator_prepare_async(h.0, id.as_ptr(), unknown.as_ptr(), Some(done), ctx(&answers, 0)),
            rcni_isolator_status_async(h.0, bad.as_ptr(), Some(done), ctx(&answers, 1)),
            rcni_isolator_status_async(h.0, id.as_ptr(), Some(done), ctx(&answers, 2)),
            rcni_isolator_isolate_async(h.0, id.as_ptr(), 0, Some(done), ctx(&answers, 3)),
            rcni_isolator_usage_async(h.0, std::ptr::null(), Some(done), ctx(&answers, 4)),
            rcni_isolator_recover_async(
                h.0,
                c"[]".as_ptr(),
                std::ptr::null(),
                Some(done),
                ctx(&answers, 5),
            ),
            rcni_isolator_cleanup_async(h.0, id.as_ptr(), Some(done), ctx(&answers, 6)),
        ]
    };
    assert_eq!(codes, [RCNI_OK; 7]);
    let mut got = answers.wait_for(7, Duration::from_secs(30));
    got.sort_by_key(|a| a.0);
    let codes: Vec<i32> = got.iter().map(|a| a.1).collect();
    assert_eq!(
        codes,
        [
            RCNI_ERR_UNKNOWN_NETWORK,
            RCNI_ERR_ARGUMENT,
            RCNI_OK,
            RCNI_ERR_ARGUMENT,
            RCNI_ERR_ARGUMENT,
            RCNI_OK,
            RCNI_OK
        ],
        "{got:?}"
    );
    assert_eq!(got[2].2, "{}");
    assert!(got[4].2.contains("NULL"), "{got:?}");
    // Without a callback or a handle nothing is submitted, and it says so.
    // SAFETY: a NULL callback and a NULL handle are part of the contract.
    unsafe {
        assert_eq!(
            rcni_isolator_status_async(h.0, id.as_ptr(), None, std::ptr::null_mut()),
            RCNI_ERR_ARGUMENT
        );
        assert_eq!(
            rcni_isolator_status_async(std::ptr::null(), id.as_ptr(), Some(done), ctx(&answers, 7)),
            RCNI_ERR_ARGUMENT
        );
    }
    // SAFETY: destroyed once, nothing in flight.
    unsafe { rcni_isolator_destroy(h.0) };
    std::thread::sleep(Duration::from_millis(50));
    // Call 7 was refused: its context leaked, its callback never ran.
    answers.assert_once_each(7);
}

/// A callback that blocks on the handle would deadlock the runtime: refused.
#[test]
fn a_blocking_call_from_a_callback_is_refused() {
    struct Nested {
        h: *mut RcniIsolator,
        code: Mutex<Option<i32>>,
        cv: Condvar,
    }
    unsafe extern "C" fn nested(ctx: *mut c_void, _code: i32, out: *mut c_char) {
        // SAFETY: the test's Nested, alive until it has seen `code`.
        let n = unsafe { &*ctx.cast::<Nested>() };
        // SAFETY: freed once.
        unsafe { rcni_isolator_free_string(out) };
        let mut o: *mut c_char = std::ptr::null_mut();
        // SAFETY: live handle, valid string.
        let code = unsafe { rcni_isolator_status(n.h, c"\"c1\"".as_ptr(), &mut o) };
        // SAFETY: freed once.
        unsafe { rcni_isolator_free_string(o) };
        *n.code.lock().unwrap() = Some(code);
        n.cv.notify_all();
    }
    let h = create(&serde_json::json!({}));
    let n = Nested {
        h: h.0,
        code: Mutex::new(None),
        cv: Condvar::new(),
    };
    // SAFETY: live handle, valid string, `n` outlives the callback (waited for below).
    let code = unsafe {
        rcni_isolator_status_async(
            h.0,
            c"\"c1\"".as_ptr(),
            Some(nested),
            (&raw const n).cast_mut().cast(),
        )
    };
    assert_eq!(code, RCNI_OK);
    let mut got = n.code.lock().unwrap();
    while got.is_none() {
        got = n.cv.wait_timeout(got, Duration::from_secs(30)).unwrap().0;
    }
    assert_eq!(*got, Some(RCNI_ERR_INVALID));
    drop(got);
    // SAFETY: destroyed once; the callback has returned... or is returning:
    // destroy waits for it.
    unsafe { rcni_isolator_destroy(h.0) };
}

#[test]
#[ignore = "needs root"]
fn two_hundred_concurrent_containers_run_on_a_bounded_number_of_threads() {
    const N: usize = 200;
    let mut env = Env::new();
    let busy = env.base.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    // ADD: marks itself busy for 0.3 s and logs how many plugins were
    // busy at once; DEL logs itself.
    env.script(
        "sleepy",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n\
             touch {busy}/$CNI_CONTAINERID\nsleep 0.3\nls {busy} | wc -l >> {base}/concurrency\n\
             rm -f {busy}/$CNI_CONTAINERID\n\
             echo '{{\"cniVersion\":\"0.3.1\",\"ips\":[{{\"address\":\"10.222.77.2/24\"}}]}}'\n\
             else echo \"$CNI_COMMAND $CNI_CONTAINERID\" >> {log}; fi\n",
            busy = busy.display(),
            base = env.base.display(),
            log = env.log.display(),
        ),
    );
    env.config(
        "sleepy.conf",
        r#"{"cniVersion":"0.3.1","name":"sleepy","type":"sleepy"}"#,
    );
    // All the containers' netns handles pin one process's namespaces.
    let pid = env.container_process();
    let limits = cni_isolator::ThreadLimits::default().resolved();
    let before = threads();
    let sampler = ThreadSampler::start();
    let h = create(&options(&env, serde_json::json!({})));
    let ids: Vec<CString> = (0..N).map(|i| cstr(&format!("\"many{i}\""))).collect();
    let config = prepare_config(&["sleepy"]);

    let round = |submit: &dyn Fn(usize, *mut c_void) -> i32| {
        let answers = Arc::new(Answers::default());
        for i in 0..N {
            assert_eq!(submit(i, ctx(&answers, i)), RCNI_OK);
        }
        let got = answers.wait_for(N, Duration::from_secs(300));
        answers.assert_once_each(N);
        for (i, code, text) in &got {
            assert_eq!(*code, RCNI_OK, "call {i}: {text}");
        }
        got
    };
    round(&|i, c| {
        // SAFETY: live handle, valid strings, callback + context (every round).
        unsafe { rcni_isolator_prepare_async(h.0, ids[i].as_ptr(), config.as_ptr(), Some(done), c) }
    });
    let t0 = Instant::now();
    round(&|i, c| {
        // SAFETY: as above.
        unsafe { rcni_isolator_isolate_async(h.0, ids[i].as_ptr(), pid, Some(done), c) }
    });
    let isolate_time = t0.elapsed();
    // SAFETY: as above.
    let status = round(&|i, c| unsafe { rcni_isolator_status_async(h.0, ids[i].as_ptr(), Some(done), c) });
    assert!(
        status.iter().all(|s| s.2.contains("10.222.77.2")),
        "{:?}",
        status.first()
    );
    // SAFETY: as above.
    round(&|i, c| unsafe { rcni_isolator_cleanup_async(h.0, ids[i].as_ptr(), Some(done), c) });
    // SAFETY: nothing in flight; destroyed once.
    unsafe { rcni_isolator_destroy(h.0) };
    let peak = sampler.stop();

    let concurrency: usize = std::fs::read_to_string(env.base.join("concurrency"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0);
    // The sampler, threads still exiting, the test harness's own.
    let slack = 6;
    let bound = before + limits.total() + slack;
    eprintln!(
        "threads: {before} before, peak {peak} (bound {bound}); plugins at once: up to {concurrency}; \
         {N} isolates in {isolate_time:?}"
    );
    assert!(peak <= bound, "{peak} threads, more than {bound}");
    // One thread per call would have needed more than the bound: the calls
    // really were in flight together.
    assert!(
        concurrency > limits.total() + slack,
        "only {concurrency} plugins at once"
    );
    assert_eq!(env.calls().iter().filter(|l| l.starts_with("DEL ")).count(), N);
    for i in 0..N {
        assert!(!exists(&env.root().join(format!("many{i}"))), "many{i} left");
    }
}

/// A plugin that hangs on ADD (logging its pid) until killed; DEL logs.
fn hanging_plugin(env: &Env) {
    env.script(
        "hang",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $$\" >> {log}\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then sleep 1000; fi\n",
            log = env.log.display(),
        ),
    );
}

fn pid_of_add(env: &Env, id: &str) -> Option<i32> {
    env.calls()
        .iter()
        .filter(|l| l.starts_with(&format!("ADD {id} ")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
#[ignore = "needs root"]
fn cleanup_cancels_a_running_isolate_and_detaches_what_it_attached() {
    let mut env = Env::new();
    env.mock_plugin("mock", V020_RESULT);
    env.mock_network("quick", "mock");
    hanging_plugin(&env);
    env.config(
        "slow.conf",
        r#"{"cniVersion":"0.4.0","name":"slow","type":"hang"}"#,
    );
    let pid = env.container_process();
    let h = create(&options(&env, serde_json::json!({})));
    let answers = Arc::new(Answers::default());
    let id = cstr("\"cancelme\"");
    let config = prepare_config(&["quick", "slow"]);
    // SAFETY: live handle, valid strings, callback + context.
    unsafe {
        assert_eq!(
            rcni_isolator_prepare_async(h.0, id.as_ptr(), config.as_ptr(), Some(done), ctx(&answers, 0)),
            RCNI_OK
        );
    }
    answers.wait_for(1, Duration::from_secs(30));
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            rcni_isolator_isolate_async(h.0, id.as_ptr(), pid, Some(done), ctx(&answers, 1)),
            RCNI_OK
        );
    }
    // The quick network is attached, the slow one hangs in its ADD.
    wait_until("the hanging ADD", Duration::from_secs(30), || {
        pid_of_add(&env, "cancelme").is_some()
            && env.calls().iter().any(|l| l.starts_with("ADD cancelme eth0 "))
    });
    let hung = pid_of_add(&env, "cancelme").unwrap();
    let ns = env.root().join("cancelme").join("ns");
    assert!(cni_isolator::netns_pin::is_live_handle(&ns));
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            rcni_isolator_cleanup_async(h.0, id.as_ptr(), Some(done), ctx(&answers, 2)),
            RCNI_OK
        );
    }
    let got = answers.wait_for(3, Duration::from_secs(30));
    answers.assert_once_each(3);
    let answer = |i: usize| got.iter().find(|a| a.0 == i).cloned().unwrap();
    let (_, code, text) = answer(1);
    assert_eq!(code, RCNI_ERR_CANCELLED, "{text}");
    assert!(text.contains("cancelled by its cleanup"), "{text}");
    let (_, code, text) = answer(2);
    assert_eq!(code, RCNI_OK, "{text}");
    // The cleanup finished after the isolate: its answer came last.
    assert_eq!(got.last().map(|a| a.0), Some(2), "{got:?}");

    assert!(gone(hung), "the hanging plugin {hung} still runs");
    let calls = env.calls();
    // Every network got its DEL, the half-attached one too, after the ADDs.
    for ifname in ["eth0", "eth1"] {
        let add = calls
            .iter()
            .position(|l| l.starts_with(&format!("ADD cancelme {ifname} ")));
        let del = calls
            .iter()
            .position(|l| l.starts_with(&format!("DEL cancelme {ifname} ")));
        assert!(add.is_some() && del.is_some() && add < del, "{ifname}: {calls:?}");
    }
    assert!(!exists(&env.root().join("cancelme")), "state dir left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&ns.display().to_string()), "netns still pinned");
    // SAFETY: nothing in flight; destroyed once.
    unsafe { rcni_isolator_destroy(h.0) };
}

#[test]
#[ignore = "needs root"]
fn destroy_with_calls_in_flight_cancels_them_and_answers_each_once() {
    const N: usize = 20;
    let mut env = Env::new();
    hanging_plugin(&env);
    env.config(
        "slow.conf",
        r#"{"cniVersion":"0.4.0","name":"slow","type":"hang"}"#,
    );
    let pid = env.container_process();
    let h = create(&options(&env, serde_json::json!({})));
    let answers = Arc::new(Answers::default());
    let config = prepare_config(&["slow"]);
    let ids: Vec<CString> = (0..N).map(|i| cstr(&format!("\"gone{i}\""))).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live handle, valid strings, writable out.
        let code = unsafe { rcni_isolator_prepare(h.0, id.as_ptr(), config.as_ptr(), &mut out) };
        // SAFETY: freed once.
        unsafe { rcni_isolator_free_string(out) };
        assert_eq!(code, RCNI_OK, "prepare {i}");
        // SAFETY: live handle, valid strings, callback + context.
        let code =
            unsafe { rcni_isolator_isolate_async(h.0, id.as_ptr(), pid, Some(done), ctx(&answers, i)) };
        assert_eq!(code, RCNI_OK);
    }
    // Quick calls in flight too.
    for i in N..N + 10 {
        // SAFETY: as above.
        let code = unsafe { rcni_isolator_status_async(h.0, ids[0].as_ptr(), Some(done), ctx(&answers, i)) };
        assert_eq!(code, RCNI_OK);
    }
    wait_until("every ADD to hang", Duration::from_secs(60), || {
        (0..N).all(|i| pid_of_add(&env, &format!("gone{i}")).is_some())
    });
    let t0 = Instant::now();
    // SAFETY: destroyed once; nothing is submitted after.
    unsafe { rcni_isolator_destroy(h.0) };
    // Destroy returned after every callback: all are in, none comes later.
    let got = answers.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        N + 10,
        "destroy returned before the callbacks: {got:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "destroy took {:?}",
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_millis(100));
    answers.assert_once_each(N + 10);
    for (i, code, text) in &got {
        if *i < N {
            assert_eq!(*code, RCNI_ERR_CANCELLED, "{text}");
            assert!(text.contains("the isolator is being destroyed"), "{text}");
        } else {
            assert_eq!(*code, RCNI_OK, "{text}");
        }
    }
    for i in 0..N {
        let hung = pid_of_add(&env, &format!("gone{i}")).unwrap();
        wait_until("the plugin to die", Duration::from_secs(5), || gone(hung));
    }
    // State stays for the next isolator, which cleans it up.
    assert!(exists(&env.root().join("gone0")));
    let again = create(&options(&env, serde_json::json!({})));
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: live handle, valid strings; no states: every container is an unknown orphan.
    let code = unsafe { rcni_isolator_recover(again.0, c"[]".as_ptr(), std::ptr::null(), &mut out) };
    // SAFETY: a string from the library, freed once.
    let text = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
    // SAFETY: freed once.
    unsafe { rcni_isolator_free_string(out) };
    assert_eq!(code, RCNI_OK, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["cleaned"].as_array().map(Vec::len), Some(N), "{text}");
    // SAFETY: destroyed once.
    unsafe { rcni_isolator_destroy(again.0) };
    assert!(!exists(&env.root().join("gone0")));
}

#[test]
#[ignore = "needs root"]
fn destroy_from_inside_a_callback_finishes_on_its_own_thread() {
    struct Destroyer {
        h: *mut RcniIsolator,
        answers: Arc<Answers>,
    }
    unsafe extern "C" fn destroy_then_done(ctx: *mut c_void, code: i32, out: *mut c_char) {
        // SAFETY: made by Box::into_raw below, called once.
        let d = unsafe { Box::from_raw(ctx.cast::<Destroyer>()) };
        // SAFETY: the handle is live until this destroy; nothing else uses it after.
        unsafe { rcni_isolator_destroy(d.h) };
        // SAFETY: forwarded: `ctx` from `ctx()`, `out` ours.
        unsafe { done(self::ctx(&d.answers, 0), code, out) };
    }
    let env = Env::new();
    let h = create(&options(&env, serde_json::json!({})));
    let answers = Arc::new(Answers::default());
    // The runtime's two workers are among these.
    let before = threads();
    let d = Box::into_raw(Box::new(Destroyer {
        h: h.0,
        answers: answers.clone(),
    }));
    // SAFETY: live handle, valid string, callback + context.
    let code =
        unsafe { rcni_isolator_status_async(h.0, c"\"c1\"".as_ptr(), Some(destroy_then_done), d.cast()) };
    assert_eq!(code, RCNI_OK);
    let got = answers.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].1, RCNI_OK, "{got:?}");
    // The finisher thread stops the runtime: its threads go.
    wait_until("the runtime's threads to end", Duration::from_secs(10), || {
        threads() + 2 <= before
    });
}
