// Parsers fill their out structs field by field and never read uninitialised locals (the C#
// compiler's definite-assignment rules guarantee it), so the JIT's zeroing of locals is waste
// on per-packet paths.
[module: System.Runtime.CompilerServices.SkipLocalsInit]
