using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Gateway.Crypto;

/// <summary>The eight 32-bit chaining words h[0..7] of BLAKE2s (RFC 7693 section 3.3).</summary>
[InlineArray(8)]
internal struct Blake2sState
{
    private uint _element0;
}

/// <summary>One 64-byte message block buffer.</summary>
[InlineArray(Blake2s.BlockSize)]
internal struct Blake2sBlock
{
    private byte _element0;
}

/// <summary>
/// The BLAKE2s compression function F (RFC 7693 section 3.2), written out round by round.
/// </summary>
/// <remarks>
/// This scalar form is the portable fallback and the reference the vector form
/// (<see cref="Blake2sVector"/>) is tested against.
/// The ten rounds are fully unrolled with the SIGMA permutation resolved at build time, so
/// every message word is a named local and no table lookup sits in the hot loop. Within a
/// round the four column (then four diagonal) G functions are interleaved step by step:
/// they are independent, which gives the CPU four dependency chains to overlap.
/// </remarks>
[SkipLocalsInit]
internal static class Blake2sCore
{
    // IV = first 32 bits of the fractional parts of the square roots of the first 8 primes
    // (the SHA-256 IV), RFC 7693 section 2.6.
    internal const uint IV0 = 0x6A09E667, IV1 = 0xBB67AE85, IV2 = 0x3C6EF372, IV3 = 0xA54FF53A;
    internal const uint IV4 = 0x510E527F, IV5 = 0x9B05688C, IV6 = 0x1F83D9AB, IV7 = 0x5BE0CD19;

    /// <summary>Initialises h with the IV xor the parameter block word 0 (RFC 7693 section 3.3).</summary>
    internal static void Init(ref Blake2sState h, int outputLength, int keyLength)
    {
        // Parameter block word 0: digest length | key length << 8 | fanout 1 << 16 | depth 1 << 24.
        h[0] = IV0 ^ 0x01010000u ^ ((uint)keyLength << 8) ^ (uint)outputLength;
        h[1] = IV1; h[2] = IV2; h[3] = IV3; h[4] = IV4; h[5] = IV5; h[6] = IV6; h[7] = IV7;
    }

    /// <summary>Writes the first output.Length bytes of h in little-endian order.</summary>
    internal static void WriteOutput(ref Blake2sState h, Span<byte> output)
    {
        Span<byte> full = stackalloc byte[Blake2s.HashSize];
        for (int i = 0; i < 8; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(full.Slice(i * 4), h[i]);
        }
        full.Slice(0, output.Length).CopyTo(output);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(full);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Word(ref byte block, int index)
    {
        uint w = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, index * 4));
        return BitConverter.IsLittleEndian ? w : BinaryPrimitivesReverse(w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint BinaryPrimitivesReverse(uint w) => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(w);

    /// <summary>
    /// Compresses one 64-byte block into h. <paramref name="counter"/> is the total number of
    /// message bytes (key block included) processed up to and including this block;
    /// <paramref name="isFinal"/> sets the last-block flag f0 = 0xFFFFFFFF.
    /// </summary>
    /// <summary>
    /// Compresses one 64-byte block into h, with the Vector128 row-parallel form where the
    /// hardware accelerates it (1.5-1.7x faster than the scalar form on the x64 development
    /// machine, CryptoBlake2sCompressBenchmarks) and the scalar form otherwise. The branch
    /// folds away at JIT time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Compress(ref Blake2sState state, ref byte block, ulong counter, bool isFinal)
    {
        if (Blake2sVector.IsSupported)
        {
            Blake2sVector.Compress(ref state, ref block, counter, isFinal);
        }
        else
        {
            CompressScalar(ref state, ref block, counter, isFinal);
        }
    }

    // AggressiveOptimization: compiled fully optimised on first use instead of starting at
    // tier 0, where this straight-line function runs several times slower (handshakes and short runs
    // such as `gateway demo` would otherwise see the slow version).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void CompressScalar(ref Blake2sState state, ref byte block, ulong counter, bool isFinal)
    {
        ref uint h = ref Unsafe.As<Blake2sState, uint>(ref state);
        uint m0 = Word(ref block, 0), m1 = Word(ref block, 1), m2 = Word(ref block, 2), m3 = Word(ref block, 3);
        uint m4 = Word(ref block, 4), m5 = Word(ref block, 5), m6 = Word(ref block, 6), m7 = Word(ref block, 7);
        uint m8 = Word(ref block, 8), m9 = Word(ref block, 9), m10 = Word(ref block, 10), m11 = Word(ref block, 11);
        uint m12 = Word(ref block, 12), m13 = Word(ref block, 13), m14 = Word(ref block, 14), m15 = Word(ref block, 15);

        uint h0 = h, h1 = Unsafe.Add(ref h, 1), h2 = Unsafe.Add(ref h, 2), h3 = Unsafe.Add(ref h, 3);
        uint h4 = Unsafe.Add(ref h, 4), h5 = Unsafe.Add(ref h, 5), h6 = Unsafe.Add(ref h, 6), h7 = Unsafe.Add(ref h, 7);

        // Work vector v[0..15] = h[0..7] || IV[0..7], with the counter and final flag folded in.
        uint v0 = h0, v1 = h1, v2 = h2, v3 = h3, v4 = h4, v5 = h5, v6 = h6, v7 = h7;
        uint v8 = IV0, v9 = IV1, v10 = IV2, v11 = IV3;
        uint v12 = IV4 ^ (uint)counter;
        uint v13 = IV5 ^ (uint)(counter >> 32);
        uint v14 = isFinal ? ~IV6 : IV6;
        uint v15 = IV7;

        // Round 0
        v0 += v4 + m0;
        v1 += v5 + m2;
        v2 += v6 + m4;
        v3 += v7 + m6;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m1;
        v1 += v5 + m3;
        v2 += v6 + m5;
        v3 += v7 + m7;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m8;
        v1 += v6 + m10;
        v2 += v7 + m12;
        v3 += v4 + m14;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m9;
        v1 += v6 + m11;
        v2 += v7 + m13;
        v3 += v4 + m15;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 1
        v0 += v4 + m14;
        v1 += v5 + m4;
        v2 += v6 + m9;
        v3 += v7 + m13;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m10;
        v1 += v5 + m8;
        v2 += v6 + m15;
        v3 += v7 + m6;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m1;
        v1 += v6 + m0;
        v2 += v7 + m11;
        v3 += v4 + m5;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m12;
        v1 += v6 + m2;
        v2 += v7 + m7;
        v3 += v4 + m3;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 2
        v0 += v4 + m11;
        v1 += v5 + m12;
        v2 += v6 + m5;
        v3 += v7 + m15;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m8;
        v1 += v5 + m0;
        v2 += v6 + m2;
        v3 += v7 + m13;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m10;
        v1 += v6 + m3;
        v2 += v7 + m7;
        v3 += v4 + m9;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m14;
        v1 += v6 + m6;
        v2 += v7 + m1;
        v3 += v4 + m4;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 3
        v0 += v4 + m7;
        v1 += v5 + m3;
        v2 += v6 + m13;
        v3 += v7 + m11;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m9;
        v1 += v5 + m1;
        v2 += v6 + m12;
        v3 += v7 + m14;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m2;
        v1 += v6 + m5;
        v2 += v7 + m4;
        v3 += v4 + m15;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m6;
        v1 += v6 + m10;
        v2 += v7 + m0;
        v3 += v4 + m8;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 4
        v0 += v4 + m9;
        v1 += v5 + m5;
        v2 += v6 + m2;
        v3 += v7 + m10;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m0;
        v1 += v5 + m7;
        v2 += v6 + m4;
        v3 += v7 + m15;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m14;
        v1 += v6 + m11;
        v2 += v7 + m6;
        v3 += v4 + m3;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m1;
        v1 += v6 + m12;
        v2 += v7 + m8;
        v3 += v4 + m13;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 5
        v0 += v4 + m2;
        v1 += v5 + m6;
        v2 += v6 + m0;
        v3 += v7 + m8;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m12;
        v1 += v5 + m10;
        v2 += v6 + m11;
        v3 += v7 + m3;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m4;
        v1 += v6 + m7;
        v2 += v7 + m15;
        v3 += v4 + m1;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m13;
        v1 += v6 + m5;
        v2 += v7 + m14;
        v3 += v4 + m9;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 6
        v0 += v4 + m12;
        v1 += v5 + m1;
        v2 += v6 + m14;
        v3 += v7 + m4;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m5;
        v1 += v5 + m15;
        v2 += v6 + m13;
        v3 += v7 + m10;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m0;
        v1 += v6 + m6;
        v2 += v7 + m9;
        v3 += v4 + m8;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m7;
        v1 += v6 + m3;
        v2 += v7 + m2;
        v3 += v4 + m11;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 7
        v0 += v4 + m13;
        v1 += v5 + m7;
        v2 += v6 + m12;
        v3 += v7 + m3;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m11;
        v1 += v5 + m14;
        v2 += v6 + m1;
        v3 += v7 + m9;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m5;
        v1 += v6 + m15;
        v2 += v7 + m8;
        v3 += v4 + m2;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m0;
        v1 += v6 + m4;
        v2 += v7 + m6;
        v3 += v4 + m10;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 8
        v0 += v4 + m6;
        v1 += v5 + m14;
        v2 += v6 + m11;
        v3 += v7 + m0;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m15;
        v1 += v5 + m9;
        v2 += v6 + m3;
        v3 += v7 + m8;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m12;
        v1 += v6 + m13;
        v2 += v7 + m1;
        v3 += v4 + m10;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m2;
        v1 += v6 + m7;
        v2 += v7 + m4;
        v3 += v4 + m5;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);
        // Round 9
        v0 += v4 + m10;
        v1 += v5 + m8;
        v2 += v6 + m7;
        v3 += v7 + m1;
        v12 = BitOperations.RotateRight(v12 ^ v0, 16);
        v13 = BitOperations.RotateRight(v13 ^ v1, 16);
        v14 = BitOperations.RotateRight(v14 ^ v2, 16);
        v15 = BitOperations.RotateRight(v15 ^ v3, 16);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 12);
        v5 = BitOperations.RotateRight(v5 ^ v9, 12);
        v6 = BitOperations.RotateRight(v6 ^ v10, 12);
        v7 = BitOperations.RotateRight(v7 ^ v11, 12);
        v0 += v4 + m2;
        v1 += v5 + m4;
        v2 += v6 + m6;
        v3 += v7 + m5;
        v12 = BitOperations.RotateRight(v12 ^ v0, 8);
        v13 = BitOperations.RotateRight(v13 ^ v1, 8);
        v14 = BitOperations.RotateRight(v14 ^ v2, 8);
        v15 = BitOperations.RotateRight(v15 ^ v3, 8);
        v8 += v12;
        v9 += v13;
        v10 += v14;
        v11 += v15;
        v4 = BitOperations.RotateRight(v4 ^ v8, 7);
        v5 = BitOperations.RotateRight(v5 ^ v9, 7);
        v6 = BitOperations.RotateRight(v6 ^ v10, 7);
        v7 = BitOperations.RotateRight(v7 ^ v11, 7);
        v0 += v5 + m15;
        v1 += v6 + m9;
        v2 += v7 + m3;
        v3 += v4 + m13;
        v15 = BitOperations.RotateRight(v15 ^ v0, 16);
        v12 = BitOperations.RotateRight(v12 ^ v1, 16);
        v13 = BitOperations.RotateRight(v13 ^ v2, 16);
        v14 = BitOperations.RotateRight(v14 ^ v3, 16);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 12);
        v6 = BitOperations.RotateRight(v6 ^ v11, 12);
        v7 = BitOperations.RotateRight(v7 ^ v8, 12);
        v4 = BitOperations.RotateRight(v4 ^ v9, 12);
        v0 += v5 + m11;
        v1 += v6 + m14;
        v2 += v7 + m12;
        v3 += v4 + m0;
        v15 = BitOperations.RotateRight(v15 ^ v0, 8);
        v12 = BitOperations.RotateRight(v12 ^ v1, 8);
        v13 = BitOperations.RotateRight(v13 ^ v2, 8);
        v14 = BitOperations.RotateRight(v14 ^ v3, 8);
        v10 += v15;
        v11 += v12;
        v8 += v13;
        v9 += v14;
        v5 = BitOperations.RotateRight(v5 ^ v10, 7);
        v6 = BitOperations.RotateRight(v6 ^ v11, 7);
        v7 = BitOperations.RotateRight(v7 ^ v8, 7);
        v4 = BitOperations.RotateRight(v4 ^ v9, 7);

        h = h0 ^ v0 ^ v8;
        Unsafe.Add(ref h, 1) = h1 ^ v1 ^ v9;
        Unsafe.Add(ref h, 2) = h2 ^ v2 ^ v10;
        Unsafe.Add(ref h, 3) = h3 ^ v3 ^ v11;
        Unsafe.Add(ref h, 4) = h4 ^ v4 ^ v12;
        Unsafe.Add(ref h, 5) = h5 ^ v5 ^ v13;
        Unsafe.Add(ref h, 6) = h6 ^ v6 ^ v14;
        Unsafe.Add(ref h, 7) = h7 ^ v7 ^ v15;
    }
}
