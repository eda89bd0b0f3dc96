using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Gateway.Datapath;

/// <summary>
/// The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
/// the data as big-endian 16-bit words, plus incremental update (RFC 1624).
/// <para>
/// Sums are carried as a <see cref="ulong"/> "partial sum" in network (big-endian) word order so
/// callers can add pseudo-header fields read with BinaryPrimitives, then <see cref="Fold"/> once.
/// Internally the bulk sum runs over native little-endian words (RFC 1071 section 2(B): the sum is
/// byte-order independent up to a final byte swap), 32 or 16 bytes at a time with Vector256/128
/// when the hardware accelerates them, keeping 16-bit halves in 32-bit lanes so nothing overflows.
/// </para>
/// </summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> to a partial sum. When summing several pieces, every
    /// piece but the last must have even length (word alignment is relative to each piece).</summary>
    public static ulong Add(ulong partialSum, ReadOnlySpan<byte> data)
    {
        ushort leFolded = FoldNative(SumNative(data));
        // Swap the little-endian-word result into big-endian word order.
        return partialSum + BinaryPrimitives.ReverseEndianness(leFolded);
    }

    /// <summary>Adds a big-endian 16-bit value (e.g. a protocol number or length).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Add(ulong partialSum, ushort value) => partialSum + value;

    /// <summary>Adds a 32-bit value as two 16-bit words (e.g. an IPv4 address in host order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Add(ulong partialSum, uint value) => partialSum + (value >> 16) + (value & 0xFFFF);

    /// <summary>Folds a partial sum to 16 bits with end-around carry (not complemented).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fold(ulong sum)
    {
        sum = (sum >> 32) + (sum & 0xFFFFFFFF);
        sum = (sum >> 32) + (sum & 0xFFFFFFFF);
        sum = (sum >> 16) + (sum & 0xFFFF);
        sum = (sum >> 16) + (sum & 0xFFFF);
        sum = (sum >> 16) + (sum & 0xFFFF);
        return (ushort)sum;
    }

    /// <summary>The value for a checksum field: ~fold(sum of data) (checksum field zeroed by the caller).</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => (ushort)~Fold(Add(0, data));

    /// <summary>The value for a checksum field from a finished partial sum.</summary>
    public static ushort Finish(ulong partialSum) => (ushort)~Fold(partialSum);

    /// <summary>
    /// RFC 1624 equation 3: HC' = ~(~HC + ~m + m'), the new checksum after one 16-bit word of the
    /// covered data changed from <paramref name="oldValue"/> to <paramref name="newValue"/>.
    /// (Equation 3 avoids the -0 / +0 ambiguity of RFC 1141's form.)
    /// </summary>
    public static ushort Update(ushort checksum, ushort oldValue, ushort newValue)
    {
        ulong sum = (ushort)~checksum;
        sum += (ushort)~oldValue;
        sum += newValue;
        return (ushort)~Fold(sum);
    }

    /// <summary>RFC 1624 update for a 32-bit field (e.g. an IPv4 address rewritten by NAT).</summary>
    public static ushort Update(ushort checksum, uint oldValue, uint newValue)
    {
        ulong sum = (ushort)~checksum;
        sum += (ushort)~(oldValue >> 16);
        sum += (ushort)~(oldValue & 0xFFFF);
        sum += newValue >> 16;
        sum += newValue & 0xFFFF;
        return (ushort)~Fold(sum);
    }

    /// <summary>RFC 1624 update for a changed run of bytes at an even offset (e.g. an IPv6 address).</summary>
    public static ushort Update(ushort checksum, ReadOnlySpan<byte> oldBytes, ReadOnlySpan<byte> newBytes)
    {
        if (oldBytes.Length != newBytes.Length)
        {
            throw new ArgumentException("Old and new byte runs must have the same length.");
        }
        ulong sum = (ushort)~checksum;
        sum += (ushort)~Fold(Add(0, oldBytes));
        sum = Add(sum, newBytes);
        return (ushort)~Fold(sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort FoldNative(ulong sum) => Fold(sum);

    /// <summary>Ones' complement-compatible sum of native-endian 16-bit words (unfolded).</summary>
    internal static ulong SumNative(ReadOnlySpan<byte> data)
    {
        ref byte p = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        nuint i = 0;
        ulong total = 0;

        if (Vector256.IsHardwareAccelerated && length >= 64)
        {
            Vector256<uint> mask = Vector256.Create(0xFFFFu);
            // Each lane gains at most 2 * 0xFFFF per block; 16384 blocks stay below 2^32.
            while (length - i >= 32)
            {
                Vector256<uint> acc = Vector256<uint>.Zero;
                nuint blockEnd = i + Math.Min((length - i) & ~(nuint)31, (nuint)16384 * 32);
                // Two independent loads per iteration hide the add latency.
                Vector256<uint> acc2 = Vector256<uint>.Zero;
                while (i + 64 <= blockEnd)
                {
                    Vector256<uint> v = Vector256.LoadUnsafe(ref p, i).AsUInt32();
                    Vector256<uint> w = Vector256.LoadUnsafe(ref p, i + 32).AsUInt32();
                    acc += (v & mask) + (v >> 16);
                    acc2 += (w & mask) + (w >> 16);
                    i += 64;
                }
                if (i + 32 <= blockEnd)
                {
                    Vector256<uint> v = Vector256.LoadUnsafe(ref p, i).AsUInt32();
                    acc += (v & mask) + (v >> 16);
                    i += 32;
                }
                total += SumLanes(acc) + SumLanes(acc2);
            }
        }
        else if (Vector128.IsHardwareAccelerated && length >= 32)
        {
            Vector128<uint> mask = Vector128.Create(0xFFFFu);
            while (length - i >= 16)
            {
                Vector128<uint> acc = Vector128<uint>.Zero;
                nuint blockEnd = i + Math.Min((length - i) & ~(nuint)15, (nuint)16384 * 16);
                while (i + 16 <= blockEnd)
                {
                    Vector128<uint> v = Vector128.LoadUnsafe(ref p, i).AsUInt32();
                    acc += (v & mask) + (v >> 16);
                    i += 16;
                }
                total += (ulong)Vector128.Sum(acc.AsUInt64() & Vector128.Create(0xFFFFFFFFul)) +
                         (ulong)Vector128.Sum(acc.AsUInt64() >> 32);
            }
        }

        // Scalar tail: 32-bit words into a 64-bit accumulator (no carries lost).
        while (length - i >= 4)
        {
            total += Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, i));
            i += 4;
        }
        if (length - i >= 2)
        {
            total += Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref p, i));
            i += 2;
        }
        if (i < length)
        {
            // A trailing odd byte is the high byte of a zero-padded big-endian word.
            byte last = Unsafe.Add(ref p, i);
            total += BitConverter.IsLittleEndian ? last : (ulong)last << 8;
        }
        if (!BitConverter.IsLittleEndian)
        {
            // On big-endian hosts the native sum already is in network order; undo the swap in Add.
            return BinaryPrimitives.ReverseEndianness(Fold(total));
        }
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SumLanes(Vector256<uint> v)
    {
        Vector256<ulong> wide = v.AsUInt64();
        return Vector256.Sum(wide & Vector256.Create(0xFFFFFFFFul)) + Vector256.Sum(wide >> 32);
    }
}
