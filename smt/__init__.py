"""Z3 encodings, SMT-LIB2 proof export and impossibility witnesses (issue 4).

* :mod:`smt.hardware`: hardware profiles (a TOML data file users extend);
* :mod:`smt.allocate`: the cheapest per-layer format assignment (an exact branch and bound
  proposes it, replayable z3 queries prove it; exact integer coefficients) and the unsat core
  when there is none;
* :mod:`smt.smtlib`: the SMT-LIB2 text of every query, its sha256, replay in z3 and cvc5;
* :mod:`smt.exact`: exact rounding into a format with :class:`fractions.Fraction`;
* :mod:`smt.witness`: checked witnesses of impossibility (overflow, output representability,
  input indistinguishability) and the HNF obstruction;
* :mod:`smt.prove`: ``certify prove``: certified / impossible / uncertifiable / hnf-obstruction.

z3 is imported lazily, inside the functions that solve: ``import smt`` does not load it.
"""
