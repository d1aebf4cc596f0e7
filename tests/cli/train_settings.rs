//! The config's `Train` and `Augment` lines through the `cnn` command: a config file that is a
//! whole recipe, flags that override it, `cnn summary` showing it, model files whose config
//! has it, and a `file:line:column` error for every bad setting.
//!
//! The data is the bars set of `tests/common/bars.rs` (8x8 images, 3 classes).

use crate::bars::{bars_setup, BARS_CONFIG};
use crate::command::Train;
use crate::common::run;
use crate::runs::{metrics, model_bytes, run_json};

/// The bars network with `settings` lines put in after the layer count (before `Input`) and
/// `tail` lines at the end.
fn config_with(settings: &str, tail: &str) -> String {
    let (count, rest) = BARS_CONFIG.split_once('\n').unwrap();
    format!("{count}\n{settings}{rest}{tail}")
}

const RECIPE: &str = "Train epochs=3 batch=16 optimizer=sgd lr=0.05 momentum=0.8 nesterov=true\n \
    weight_decay=5e-4 schedule=cosine warmup=1 label_smoothing=0.1 seed=7 init=he\n";

#[test]
fn a_config_with_train_and_augment_lines_trains_with_their_settings_and_run_json_records_them() {
    let (dir, data) = bars_setup();
    // The Train line (continued on an indented line) stands before Input and the Augment line
    // after the last layer; the layer count stays 4.
    let text = config_with(RECIPE, "Augment shift=1 flip=horizontal\n");
    Train::new(dir.path().join("recipe.cfg"), dir.path().join("recipe"))
        .config(&text)
        .data(&data)
        .ok();
    let j = run_json(&dir.path().join("recipe"));
    assert_eq!(j["epochs"], 3);
    assert_eq!(j["batch_size"], 16);
    // optimizer=sgd with momentum and nesterov=true is PyTorch's SGD(nesterov=True).
    assert_eq!(j["optimizer"], "nesterov");
    assert_eq!(j["momentum"].as_f64().unwrap() as f32, 0.8);
    assert_eq!(j["lr"].as_f64().unwrap() as f32, 0.05);
    assert_eq!(j["weight_decay"].as_f64().unwrap() as f32, 5e-4);
    assert_eq!(j["schedule"], "cosine");
    assert_eq!(j["warmup"], 1);
    assert_eq!(j["label_smoothing"].as_f64().unwrap() as f32, 0.1);
    assert_eq!(j["seed"], 7);
    assert_eq!(j["init_scheme"], "he");
    assert_eq!(j["shift"], 1);
    assert_eq!(j["flip"], true);
    assert_eq!(metrics(&dir.path().join("recipe")).len(), 3);

    // The same settings given as flags train the same model, byte for byte.
    let flags = [
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--optimizer",
        "nesterov",
        "--lr",
        "0.05",
        "--momentum",
        "0.8",
        "--weight-decay",
        "5e-4",
        "--schedule",
        "cosine",
        "--warmup",
        "1",
        "--label-smoothing",
        "0.1",
        "--seed",
        "7",
        "--init-scheme",
        "he",
        "--shift",
        "1",
        "--flip",
    ];
    Train::new(dir.path().join("flags.cfg"), dir.path().join("flags"))
        .config(&text)
        .data(&data)
        .args(&flags)
        .ok();
    assert_eq!(
        model_bytes(&dir.path().join("recipe")),
        model_bytes(&dir.path().join("flags"))
    );
}

#[test]
fn flags_on_the_command_line_override_the_config_lines_and_defaults_fill_the_rest() {
    let (dir, data) = bars_setup();
    let text = config_with("Train epochs=3 lr=0.05 batch=16\n", "");
    Train::new(dir.path().join("over.cfg"), dir.path().join("over"))
        .config(&text)
        .data(&data)
        .args(&["--lr", "0.02", "--epochs", "2"])
        .ok();
    let j = run_json(&dir.path().join("over"));
    assert_eq!(j["lr"].as_f64().unwrap() as f32, 0.02, "the flag wins");
    assert_eq!(j["epochs"], 2, "the flag wins");
    assert_eq!(j["batch_size"], 16, "the config line wins over the default");
    assert_eq!(j["optimizer"], "sgd", "the default");
    assert_eq!(metrics(&dir.path().join("over")).len(), 2);
}

#[test]
fn a_schedule_key_of_the_file_is_refused_without_its_schedule_unless_a_flag_gives_it() {
    let (dir, data) = bars_setup();
    let text = config_with("Train epochs=2 gamma=0.5\n", "");
    let (code, _, stderr) = Train::new(dir.path().join("alone.cfg"), dir.path().join("alone"))
        .config(&text)
        .data(&data)
        .run();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("alone.cfg:2:16: `gamma=0.5` applies to `schedule=step`"),
        "{stderr}"
    );
    Train::new(dir.path().join("flag.cfg"), dir.path().join("flag"))
        .config(&text)
        .data(&data)
        .args(&["--schedule", "step"])
        .ok();
    assert_eq!(
        run_json(&dir.path().join("flag"))["gamma"]
            .as_f64()
            .unwrap() as f32,
        0.5
    );
}

#[test]
fn cnn_summary_shows_the_settings_after_the_layer_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("net.cfg");
    std::fs::write(&cfg, config_with(RECIPE, "Augment shift=2\n")).unwrap();
    let (code, stdout, stderr) = run(&[&"summary", &cfg]);
    assert_eq!(code, 0, "{stderr}");
    let table_end = stdout.find("Training FLOPs per sample").expect("the table");
    let block = stdout.find("Training settings").expect("a settings block");
    assert!(block > table_end, "{stdout}");
    assert!(
        stdout.contains(
            "  Train epochs=3 batch=16 optimizer=sgd lr=0.05 momentum=0.8 nesterov=true \
             weight_decay=5e-4 schedule=cosine warmup=1 label_smoothing=0.1 seed=7 init=he\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  Augment shift=2\n"), "{stdout}");
    // Without settings lines, no block.
    std::fs::write(&cfg, BARS_CONFIG).unwrap();
    let (_, stdout, _) = run(&[&"summary", &cfg]);
    assert!(!stdout.contains("Training settings"), "{stdout}");
}

#[test]
fn a_model_whose_config_has_settings_lines_loads_in_summary_evaluate_and_predict() {
    let (dir, data) = bars_setup();
    let text = config_with("Train epochs=1 batch=8\n", "Augment shift=1\n");
    Train::new(dir.path().join("m.cfg"), dir.path().join("m"))
        .config(&text)
        .data(&data)
        .ok();
    let model = dir.path().join("m").join("model.safetensors");
    let (code, stdout, stderr) = run(&[&"summary", &model]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("  Train epochs=1 batch=8\n"), "{stdout}");
    let (code, _, stderr) = run(&[&"evaluate", &model, &"--data", &data]);
    assert_eq!(code, 0, "{stderr}");
    let images = data.join("t10k-images-idx3-ubyte");
    let (code, stdout, stderr) = run(&[&"predict", &model, &images]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
}

#[test]
fn every_bad_setting_is_refused_with_its_file_line_and_column_before_training() {
    let (dir, data) = bars_setup();
    // (line 2 of the file, the column the error points at, a piece of the message)
    let cases: &[(&str, usize, &str)] = &[
        ("Train lr=0", 10, "`lr` must be a number above 0"),
        ("Train lr=inf", 10, "`lr` must be a number above 0"),
        (
            "Train momentum=1",
            16,
            "`momentum` must be a number from 0 to below 1",
        ),
        (
            "Train schedule=cosin",
            16,
            "unknown schedule `cosin`; did you mean `cosine`?",
        ),
        (
            "Train optimizer=adamm",
            17,
            "unknown optimizer `adamm`; did you mean `adam`?",
        ),
        (
            "Train gamma=0 schedule=step",
            13,
            "`gamma` must be a number above 0 and at most 1",
        ),
        (
            "Train label_smoothing=1",
            23,
            "`label_smoothing` must be a number from 0 to below 1",
        ),
        (
            "Train epochs=0",
            14,
            "`epochs` must be a whole number from 1",
        ),
        (
            "Train batch=-3",
            13,
            "`batch` must be a whole number from 1",
        ),
        (
            "Train normalize=yes",
            17,
            "`normalize` must be `true` or `false`",
        ),
        (
            "Train lrr=0.1",
            7,
            "unknown key `lrr` for Train; did you mean `lr`?",
        ),
        ("Train lr=0.1 lr=0.2", 14, "duplicate key `lr`"),
        ("Train nesterov=true", 7, "`nesterov=true` needs a momentum"),
        (
            "Train optimizer=adam nesterov=true",
            22,
            "`nesterov` applies to SGD with momentum",
        ),
        (
            "Train early_stop=val_loss",
            7,
            "watches a validation split, and this run has none",
        ),
        (
            "Train patience=3",
            7,
            "`patience=3` applies to early stopping",
        ),
        (
            "Augment shift=8",
            15,
            "`shift=8` is too large for 8x8 images",
        ),
        (
            "Augment flip=vertical",
            14,
            "`flip` must be `horizontal` (left to right) or `none`",
        ),
        ("Augment lr=0.1", 9, "unknown key `lr` for Augment"),
    ];
    for (line, col, msg) in cases {
        let text = config_with(&format!("{line}\n"), "");
        let (code, _, stderr) = Train::new(dir.path().join("bad.cfg"), dir.path().join("bad"))
            .config(&text)
            .data(&data)
            .run();
        assert_eq!(code, 1, "{line}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{line}: {stderr}");
        let at = format!("bad.cfg:2:{col}: ");
        assert!(stderr.contains(&at), "{line}: expected {at} in {stderr}");
        assert!(stderr.contains(msg), "{line}: expected {msg:?} in {stderr}");
        assert!(
            !dir.path().join("bad").exists(),
            "{line}: nothing is written"
        );
    }
}

#[test]
fn a_misspelt_settings_line_after_the_layers_gets_a_did_you_mean() {
    let (dir, data) = bars_setup();
    let text = config_with("", "Augmnet shift=1\n");
    let (code, _, stderr) = Train::new(dir.path().join("typo.cfg"), dir.path().join("typo"))
        .config(&text)
        .data(&data)
        .run();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("typo.cfg:7:1: unknown layer `Augmnet`; did you mean `Augment`?"),
        "{stderr}"
    );
}

#[test]
fn a_second_train_line_is_refused_naming_the_first() {
    let (dir, data) = bars_setup();
    let text = config_with("Train lr=0.1\n", "Train epochs=2\n");
    let (code, _, stderr) = Train::new(dir.path().join("twice.cfg"), dir.path().join("twice"))
        .config(&text)
        .data(&data)
        .run();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("twice.cfg:8:1: a second Train line (the first is on line 2)"),
        "{stderr}"
    );
}

#[test]
fn a_shift_flag_too_large_for_the_image_is_a_usage_error() {
    let (dir, data) = bars_setup();
    let (code, _, stderr) = Train::new(dir.path().join("big.cfg"), dir.path().join("big"))
        .config(BARS_CONFIG)
        .data(&data)
        .args(&["--shift", "8"])
        .run();
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--shift 8 is too large for the config's 8x8 images"),
        "{stderr}"
    );
}

#[test]
fn a_sweep_takes_epochs_from_the_train_line_when_not_listed() {
    let (dir, data) = bars_setup();
    let cfg = dir.path().join("net.cfg");
    std::fs::write(&cfg, config_with("Train epochs=2 batch=16\n", "")).unwrap();
    let out = dir.path().join("sweep");
    let (code, _, stderr) = run(&[
        &"sweep",
        &cfg,
        &"--data",
        &data,
        &"--lr",
        &"0.05,0.1",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.join("lr0.05-epochs2").join("run.json").exists());
    assert!(out.join("lr0.1-epochs2").join("run.json").exists());
}

#[test]
fn momentum_as_a_flag_means_what_it_means_on_the_train_line_and_is_refused_where_ignored() {
    let (dir, data) = bars_setup();
    let train = |name: &str, text: &str, args: &[&str]| {
        Train::new(
            dir.path().join(format!("{name}.cfg")),
            dir.path().join(name),
        )
        .config(text)
        .data(&data)
        .defaults(&[["--epochs", "2"], ["--batch-size", "16"], ["--lr", "0.05"]])
        .args(args)
        .run()
    };
    // The weights (a model file holds the config text too, which differs).
    let bytes = |name: &str| {
        let path = dir.path().join(name).join("model.safetensors");
        let (model, _) = cnn::model_file::load(&path).unwrap();
        let params = model.named_params();
        let bits = params.iter().flat_map(|(_, p)| p.value.data().iter());
        bits.map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    // PyTorch's SGD(momentum=0.5): the line, the flags, and the momentum optimiser by name.
    let line = config_with("Train optimizer=sgd momentum=0.5\n", "");
    for (name, text, args) in [
        ("line", line.as_str(), &[][..]),
        (
            "flags",
            BARS_CONFIG,
            &["--optimizer", "sgd", "--momentum", "0.5"][..],
        ),
        ("alone", BARS_CONFIG, &["--momentum", "0.5"][..]),
        (
            "named",
            BARS_CONFIG,
            &["--optimizer", "momentum", "--momentum", "0.5"][..],
        ),
        ("plain", BARS_CONFIG, &["--optimizer", "sgd"][..]),
        (
            "zero",
            BARS_CONFIG,
            &["--optimizer", "sgd", "--momentum", "0"][..],
        ),
    ] {
        let (code, _, stderr) = train(name, text, args);
        assert_eq!(code, 0, "{name}: {stderr}");
    }
    for (a, b, same) in [
        ("flags", "line", true),
        ("alone", "line", true),
        ("named", "line", true),
        ("plain", "line", false),
        ("zero", "plain", true),
    ] {
        // Momentum 0.5 changes the run; SGD(momentum=0) is plain SGD.
        assert_eq!(bytes(a) == bytes(b), same, "{a} and {b}");
    }
    let j = run_json(&dir.path().join("flags"));
    assert_eq!(
        (j["optimizer"].as_str(), j["momentum"].as_f64()),
        (Some("momentum"), Some(0.5))
    );
    assert_eq!(run_json(&dir.path().join("plain"))["optimizer"], "sgd");

    // Adam and AdamW have no momentum factor (their betas are fixed): refused, not ignored.
    for optimizer in ["adam", "adamw"] {
        let (code, _, stderr) = train(
            "adam",
            BARS_CONFIG,
            &["--optimizer", optimizer, "--momentum", "0.5"],
        );
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("--momentum applies to SGD (--optimizer sgd, momentum or nesterov), not to --optimizer {optimizer}")),
            "{stderr}"
        );
        assert!(!dir.path().join("adam").exists());
    }
    let text = config_with("Train optimizer=adam momentum=0.9\n", "");
    let (code, _, stderr) = train("adam", &text, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("adam.cfg:2:22: `momentum=0.9` applies to SGD"),
        "{stderr}"
    );
    // A momentum the file gives, with --optimizer adam on the command line: blamed on the file.
    let (code, _, stderr) = train("adam", &line, &["--optimizer", "adam"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("adam.cfg:2:21: `momentum=0.5` applies to SGD"),
        "{stderr}"
    );
    // Nesterov's momentum needs a momentum, as PyTorch's SGD(nesterov=True) does.
    let (code, _, stderr) = train(
        "nag",
        BARS_CONFIG,
        &["--optimizer", "nesterov", "--momentum", "0"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--optimizer nesterov needs a --momentum above 0"),
        "{stderr}"
    );
    let text = config_with("Train optimizer=sgd momentum=0 nesterov=true\n", "");
    let (code, _, stderr) = train("nag", &text, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nag.cfg:2:21: `momentum=0` "), "{stderr}");
    assert!(!dir.path().join("nag").exists());
}
