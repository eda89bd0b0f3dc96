using BenchmarkDotNet.Attributes;
using Gateway.Tunnel;

namespace Gateway.Benchmarks;

/// <summary>One clock read, as the data path does once per packet: the high-resolution clock
/// (Stopwatch, and TimeProvider.System on top of it) against the daemon's millisecond clock.</summary>
public class ClockBenchmarks
{
    private readonly TimeProvider _system = TimeProvider.System;
    private readonly TimeProvider _coarse = CoarseTimeProvider.Instance;

    [Benchmark(Baseline = true, Description = "Stopwatch.GetTimestamp")]
    public long Stopwatch() => System.Diagnostics.Stopwatch.GetTimestamp();

    [Benchmark(Description = "TimeProvider.System.GetTimestamp")]
    public long SystemProvider() => _system.GetTimestamp();

    [Benchmark(Description = "CoarseTimeProvider.GetTimestamp")]
    public long Coarse() => _coarse.GetTimestamp();
}
