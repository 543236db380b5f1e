//! IAM policy documents (identity policies in `iam.json`, session policies in AssumeRole) are
//! user input parsed on every authorized request path. Checks: parsing any bytes never
//! panics; a document that parses serialises to JSON that parses to the same policy, and
//! serialising that again gives the same text (the writer keeps what it read); the same holds
//! through `serde_json::Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard_iam::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let written = serde_json::to_string(&policy).expect("a parsed policy serialises");
    let again = Policy::parse(&written)
        .unwrap_or_else(|e| panic!("the serialised policy does not parse: {e}\n{written}"));
    assert_eq!(again, policy, "round trip changed the policy:\n{written}");
    assert_eq!(
        serde_json::to_string(&again).expect("serialises"),
        written,
        "serialising is not stable"
    );
    // Through `serde_json::Value` (sorted keys) the condition order may change, so compare
    // the values.
    let value = policy.to_json_value();
    let from_value = Policy::from_json_value(&value).expect("the JSON value parses");
    assert_eq!(from_value.to_json_value(), value);
});
