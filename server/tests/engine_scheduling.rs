//! The engine thread's scheduling on a real model (SmolLM2): background
//! warm-ups give way to interactive jobs and resume from what they cached,
//! no warm-up starts while a keystroke's job is being prepared, late jobs
//! finish after their deadline, slots keep several prompts, and
//! none of it changes a single generated token.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cria::engine::{EngineHandle, EngineOptions, GenerationRequest, JobOptions, Priority, SlotChoice};

const PROGRAM: &str = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\n";

fn start(kv_cache_mb: usize) -> (EngineHandle, std::sync::Arc<cria::engine::Tokenizer>) {
    let options = EngineOptions { context_length: 2048, kv_cache_mb, ..EngineOptions::default() };
    let (engine, loading) = EngineHandle::spawn(support::smollm2(), options, Box::new(|_| {})).expect("engine starts");
    let loaded = loading.blocking_recv().expect("an answer").expect("model loads");
    (engine, loaded.tokenizer)
}

fn prompt(tokenizer: &cria::engine::Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text).expect("tokenizes")
}

fn auto(priority: Priority, key: &str) -> JobOptions {
    JobOptions { slot: SlotChoice::Auto, priority, late_budget: None, key: Some(key.into()), written: None }
}

/// Runs a job and reports when its answer came, on `done`.
fn run(
    engine: &EngineHandle,
    request: GenerationRequest,
    options: JobOptions,
    name: &'static str,
    done: &mpsc::Sender<(&'static str, Instant, String)>,
) {
    let reply = engine.submit(request, options, None);
    let done = done.clone();
    std::thread::spawn(move || {
        let completion = reply.blocking_recv().expect("an answer").expect("no error");
        let _ = done.send((name, Instant::now(), completion.text));
    });
}

#[test]
fn a_warm_up_gives_way_to_a_keystroke_and_resumes_without_changing_any_answer() {
    let (engine, tokenizer) = start(256);
    let long = PROGRAM.repeat(20) + "def main():\n    ";
    let other = "import os\n\n\ndef list_files(path):\n    ";
    let (long_tokens, other_tokens) = (prompt(&tokenizer, &long), prompt(&tokenizer, other));
    assert!(long_tokens.len() > 700, "{}", long_tokens.len());

    // Reference answers from a fresh engine, no warm-up.
    let (fresh, _) = start(0);
    let reference =
        |tokens: &[u32]| fresh.generate(GenerationRequest::new(tokens.to_vec(), 16, vec![])).blocking_recv().unwrap().unwrap().text;
    let (want_long, want_other) = (reference(&long_tokens), reference(&other_tokens));

    let (done, answers) = mpsc::channel();
    let warm = GenerationRequest { max_new_tokens: 0, ..GenerationRequest::new(long_tokens.clone(), 0, vec![]) };
    run(&engine, warm, auto(Priority::Background, "long.py"), "warm-up", &done);
    std::thread::sleep(Duration::from_millis(30)); // the warm-up is under way
    run(&engine, GenerationRequest::new(other_tokens.clone(), 16, vec![]), auto(Priority::Interactive, "other.py"), "keystroke", &done);
    let first = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    let second = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    assert_eq!((first.0, second.0), ("keystroke", "warm-up"), "the keystroke is answered before the warm-up ends");
    assert_eq!(first.2, want_other, "the keystroke's answer is the one a fresh engine gives");

    // The warm-up's prompt is cached whole, in a slot of its own.
    assert_eq!(engine.cached_prefix(&long_tokens), long_tokens.len());
    assert!(engine.cached_prefix(&other_tokens) >= other_tokens.len(), "the keystroke's slot is kept too");
    let usage = engine.kv_usage();
    assert!(usage.slots >= 2 && usage.used >= 2 && usage.bytes > 0, "{usage:?}");
    assert!(engine.prefill_rate().is_some_and(|r| r > 0.0));
    let warmed = engine.submit(GenerationRequest::new(long_tokens.clone(), 16, vec![]), auto(Priority::Interactive, "long.py"), None);
    let warmed = warmed.blocking_recv().unwrap().unwrap();
    assert_eq!(warmed.text, want_long, "resumed warm-up, same answer");
    assert!(warmed.reused_tokens + 1 >= long_tokens.len(), "reused {} of {}", warmed.reused_tokens, long_tokens.len());
}

#[test]
fn the_newest_documents_warm_up_goes_first_and_the_older_one_resumes_after_it() {
    let (engine, tokenizer) = start(256);
    let first_doc = prompt(&tokenizer, &(PROGRAM.repeat(20) + "def main():\n    "));
    let second_doc = prompt(&tokenizer, &("import os\n\n\n".to_string() + &PROGRAM.repeat(3) + "def list_files(path):\n    "));
    assert!(first_doc.len() > 700, "{}", first_doc.len());
    let (fresh, _) = start(0);
    let want_first = fresh.generate(GenerationRequest::new(first_doc.clone(), 16, vec![])).blocking_recv().unwrap().unwrap().text;

    let (done, answers) = mpsc::channel();
    let warm = |tokens: &[u32]| GenerationRequest { max_new_tokens: 0, ..GenerationRequest::new(tokens.to_vec(), 0, vec![]) };
    run(&engine, warm(&first_doc), auto(Priority::Background, "first.py"), "first", &done);
    std::thread::sleep(Duration::from_millis(30)); // the first warm-up is under way
    // The user opened another file: its warm-up comes ahead of the first's
    // (which is long: several chunks still to go).
    run(&engine, warm(&second_doc), auto(Priority::Background, "second.py"), "second", &done);
    let a = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    let b = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    assert_eq!((a.0, b.0), ("second", "first"), "the newest document's warm-up ends first");
    assert_eq!(engine.cached_prefix(&first_doc), first_doc.len(), "the older warm-up resumed and finished");
    assert_eq!(engine.cached_prefix(&second_doc), second_doc.len());
    let warmed = engine.submit(GenerationRequest::new(first_doc.clone(), 16, vec![]), auto(Priority::Interactive, "first.py"), None);
    let warmed = warmed.blocking_recv().unwrap().unwrap();
    assert_eq!(warmed.text, want_first, "a warm-up that gave way mid-chunk computes the same cache");
    assert!(warmed.reused_tokens + 1 >= first_doc.len());
}

#[test]
fn no_warm_up_starts_while_a_keystrokes_job_is_being_prepared() {
    let (engine, tokenizer) = start(256);
    let tokens = prompt(&tokenizer, &(PROGRAM.repeat(4) + "def main():\n    "));
    let (done, answers) = mpsc::channel();
    // A keystroke's prompt is being built: a warm-up queued now must wait.
    let incoming = engine.expect_interactive();
    let warm = GenerationRequest { max_new_tokens: 0, ..GenerationRequest::new(tokens.clone(), 0, vec![]) };
    run(&engine, warm, auto(Priority::Background, "a.py"), "warm-up", &done);
    assert!(answers.recv_timeout(Duration::from_millis(500)).is_err(), "the warm-up ran while a keystroke's job was on its way");
    assert_eq!(engine.cached_prefix(&tokens), 0, "not one chunk of it was computed");
    // The job arrives and runs first; then the warm-up.
    run(
        &engine,
        GenerationRequest::new(prompt(&tokenizer, "import os\n"), 4, vec![]),
        auto(Priority::Interactive, "b.py"),
        "keystroke",
        &done,
    );
    drop(incoming);
    let first = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    let second = answers.recv_timeout(Duration::from_secs(300)).expect("an answer");
    assert_eq!((first.0, second.0), ("keystroke", "warm-up"));
    assert_eq!(engine.cached_prefix(&tokens), tokens.len());
    // An abandoned preparation lets background work go on as well.
    let abandoned = engine.expect_interactive();
    drop(abandoned);
    let warm = GenerationRequest { max_new_tokens: 0, ..GenerationRequest::new(prompt(&tokenizer, "import sys\n"), 0, vec![]) };
    run(&engine, warm, auto(Priority::Background, "c.py"), "warm-up", &done);
    answers.recv_timeout(Duration::from_secs(300)).expect("the warm-up runs once nothing is on its way");
}

#[test]
fn a_late_job_finishes_its_prefill_past_the_deadline_and_decodes_on_its_late_budget() {
    let (engine, tokenizer) = start(0);
    let tokens = prompt(&tokenizer, &(PROGRAM.repeat(10) + "def main():\n    "));
    let already_past = Instant::now();
    let late = |late_budget| JobOptions { slot: SlotChoice::Auto, priority: Priority::Interactive, late_budget, key: Some("a.py".into()), written: None };
    let request = GenerationRequest { deadline: Some(already_past), ..GenerationRequest::new(tokens.clone(), 8, vec![]) };
    let on_time = engine.submit(request.clone(), late(None), None).blocking_recv().unwrap().unwrap();
    assert_eq!((on_time.stop_reason.as_str(), on_time.tokens.len()), ("deadline", 0), "without a late budget the deadline ends it");
    let finished = engine.submit(request, late(Some(Duration::from_secs(60))), None).blocking_recv().unwrap().unwrap();
    assert_eq!(finished.stop_reason.as_str(), "length", "with one it runs to the end");
    assert_eq!(finished.tokens.len(), 8);
    assert_eq!(engine.cached_prefix(&tokens), tokens.len());
}
