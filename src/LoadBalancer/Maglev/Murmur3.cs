using System.Buffers.Binary;
using System.Numerics;

namespace Gateway.LoadBalancer;

/// <summary>
/// MurmurHash3 x64 128-bit (Austin Appleby's reference MurmurHash3_x64_128), as Cilium's
/// pkg/murmur3 computes it on little-endian hosts: the two 64-bit halves give a Maglev backend
/// its permutation offset and skip.
/// </summary>
public static class Murmur3
{
    private const ulong C1 = 0x87c37b91114253d5UL;
    private const ulong C2 = 0x4cf5ad432745937fUL;

    public static (ulong H1, ulong H2) Hash128(ReadOnlySpan<byte> data, uint seed)
    {
        int nblocks = data.Length / 16;
        ulong h1 = seed, h2 = seed;
        for (int i = 0; i < nblocks; i++)
        {
            ulong k1 = BinaryPrimitives.ReadUInt64LittleEndian(data[(i * 16)..]);
            ulong k2 = BinaryPrimitives.ReadUInt64LittleEndian(data[(i * 16 + 8)..]);
            k1 *= C1; k1 = BitOperations.RotateLeft(k1, 31); k1 *= C2; h1 ^= k1;
            h1 = BitOperations.RotateLeft(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
            k2 *= C2; k2 = BitOperations.RotateLeft(k2, 33); k2 *= C1; h2 ^= k2;
            h2 = BitOperations.RotateLeft(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
        }
        var tail = data[(nblocks * 16)..];
        ulong t1 = 0, t2 = 0;
        for (int i = tail.Length - 1; i >= 8; i--)
        {
            t2 ^= (ulong)tail[i] << ((i - 8) * 8);
        }
        if (tail.Length > 8)
        {
            t2 *= C2; t2 = BitOperations.RotateLeft(t2, 33); t2 *= C1; h2 ^= t2;
        }
        for (int i = Math.Min(tail.Length, 8) - 1; i >= 0; i--)
        {
            t1 ^= (ulong)tail[i] << (i * 8);
        }
        if (tail.Length > 0)
        {
            t1 *= C1; t1 = BitOperations.RotateLeft(t1, 31); t1 *= C2; h1 ^= t1;
        }
        h1 ^= (ulong)data.Length;
        h2 ^= (ulong)data.Length;
        h1 += h2;
        h2 += h1;
        h1 = Fmix64(h1);
        h2 = Fmix64(h2);
        h1 += h2;
        h2 += h1;
        return (h1, h2);
    }

    private static ulong Fmix64(ulong k)
    {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdUL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53UL;
        k ^= k >> 33;
        return k;
    }
}

/// <summary>
/// Bob Jenkins' lookup3 as the Linux kernel's jhash.h writes it (jhash_3words, __jhash_mix,
/// __jhash_final). Cilium's bpf/lib/hash.h hashes a flow with it to index the Maglev table.
/// </summary>
public static class JHash
{
    private const uint InitVal = 0xdeadbeef;

    public static uint Hash3Words(uint a, uint b, uint c, uint initval)
    {
        uint iv = initval + InitVal + (3 << 2);
        a += iv;
        b += iv;
        c += iv;
        Final(ref a, ref b, ref c);
        return c;
    }

    /// <summary>Cilium's hash_from_tuple_v6: the 16-byte source address mixed with ports and protocol.</summary>
    public static uint HashV6(uint s1, uint s2, uint s3, uint s4, uint ports, uint protocol, uint seed)
    {
        uint a = s1, b = s2, c = s3;
        Mix(ref a, ref b, ref c);
        a += s4;
        b += ports;
        c += protocol;
        Mix(ref a, ref b, ref c);
        a += seed;
        Final(ref a, ref b, ref c);
        return c;
    }

    private static void Mix(ref uint a, ref uint b, ref uint c)
    {
        a -= c; a ^= BitOperations.RotateLeft(c, 4); c += b;
        b -= a; b ^= BitOperations.RotateLeft(a, 6); a += c;
        c -= b; c ^= BitOperations.RotateLeft(b, 8); b += a;
        a -= c; a ^= BitOperations.RotateLeft(c, 16); c += b;
        b -= a; b ^= BitOperations.RotateLeft(a, 19); a += c;
        c -= b; c ^= BitOperations.RotateLeft(b, 4); b += a;
    }

    private static void Final(ref uint a, ref uint b, ref uint c)
    {
        c ^= b; c -= BitOperations.RotateLeft(b, 14);
        a ^= c; a -= BitOperations.RotateLeft(c, 11);
        b ^= a; b -= BitOperations.RotateLeft(a, 25);
        c ^= b; c -= BitOperations.RotateLeft(b, 16);
        a ^= c; a -= BitOperations.RotateLeft(c, 4);
        b ^= a; b -= BitOperations.RotateLeft(a, 14);
        c ^= b; c -= BitOperations.RotateLeft(b, 24);
    }
}
