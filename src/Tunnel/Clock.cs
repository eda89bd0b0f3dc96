using System.Security.Cryptography;

namespace Gateway.Tunnel;

/// <summary>Randomness the engine needs besides key generation: session indices, timer jitter,
/// cookie secrets and nonces. Injectable so tests can fix the jitter.</summary>
public interface IRandomSource
{
    void Fill(Span<byte> destination);
}

/// <summary>The default source: the OS CSPRNG.</summary>
public sealed class SystemRandomSource : IRandomSource
{
    public static readonly SystemRandomSource Instance = new();
    public void Fill(Span<byte> destination) => RandomNumberGenerator.Fill(destination);
}

/// <summary>Monotonic nanoseconds from a <see cref="TimeProvider"/> timestamp (no allocation).</summary>
internal static class ClockExtensions
{
    public static long NowNanoseconds(this TimeProvider clock)
    {
        long ticks = clock.GetTimestamp();
        long frequency = clock.TimestampFrequency;
        if (frequency == 1_000_000_000L) return ticks;
        // Split to avoid overflow of ticks * 1e9 for large tick values.
        long seconds = ticks / frequency;
        long remainder = ticks % frequency;
        return seconds * 1_000_000_000L + remainder * 1_000_000_000L / frequency;
    }
}
