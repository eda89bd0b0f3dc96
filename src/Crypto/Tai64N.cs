using System.Buffers.Binary;

namespace Gateway.Crypto;

/// <summary>
/// TAI64N timestamps as used in the WireGuard handshake initiation (whitepaper 5.4.2):
/// <code>
///   0                   1                   2                   3
///   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  |            TAI64 label: 2^62 + 10 + Unix seconds              |
///  |                        (64 bits, big-endian)                  |
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///  |                nanoseconds 0..999999999 (big-endian)          |
///  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// </code>
/// The +10 s is the TAI-UTC offset of the TAI64 epoch that both wireguard-go
/// (base 0x400000000000000a) and the Linux kernel use; peers only ever compare our
/// stamps with our own earlier stamps, but matching them byte for byte costs nothing.
/// </summary>
public static class Tai64N
{
    public const int Size = 12;
    internal const ulong Base = 0x400000000000000aUL;

    public static void Write(DateTimeOffset time, Span<byte> destination)
    {
        RequireSize(destination.Length, nameof(destination));
        long unixTicks = time.UtcTicks - DateTime.UnixEpoch.Ticks;
        long seconds = Math.DivRem(unixTicks, TimeSpan.TicksPerSecond, out long subTicks);
        if (subTicks < 0)
        {
            seconds--;
            subTicks += TimeSpan.TicksPerSecond;
        }
        WriteCore((ulong)((long)Base + seconds), (uint)(subTicks * TimeSpan.NanosecondsPerTick), destination);
    }

    internal static void WriteCore(ulong label, uint nanoseconds, Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, label);
        BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(8), nanoseconds);
    }

    /// <summary>Negative, zero or positive as a is earlier than, equal to or later than b (byte-wise order).</summary>
    public static int Compare(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        RequireSize(a.Length, nameof(a));
        RequireSize(b.Length, nameof(b));
        // Big-endian fields make byte order equal time order.
        return Math.Sign(a.SequenceCompareTo(b));
    }

    private static void RequireSize(int length, string name)
    {
        if (length != Size)
        {
            throw new ArgumentException($"A TAI64N timestamp is {Size} bytes, not {length}.", name);
        }
    }
}
