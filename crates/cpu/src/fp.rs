//! Floating point (F and D extensions): placeholder until the FP unit lands.
