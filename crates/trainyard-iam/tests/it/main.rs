//! Integration tests for trainyard-iam, compiled into one test binary.

// The JSON scenario corpus in `tests/corpus/`: one file per scenario, AWS documentation
// examples plus trainyard's tenant policy.
mod corpus;
// proptest invariants: the wildcard matcher against a reference, deny precedence,
// statement order independence.
mod invariants;
