//! The toolkit's reading of hyperparameter values (Python's `json.loads` semantics: NaN,
//! unbounded ints, duplicate keys) that every job's `SM_HPS` and `SM_HP_*` are built from.
//! Checks: any input never panics; what it renders (`json.dumps(sort_keys=True)`) reads back
//! and renders to the same text, as it does in Python.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard::runner::toolkit_env::hyperparameter_json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(rendered) = hyperparameter_json(text) {
        assert_eq!(
            hyperparameter_json(&rendered).as_deref(),
            Some(rendered.as_str()),
            "json.dumps output re-read differently: {text:?}"
        );
    }
});
