using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Gateway.Crypto;

/// <summary>
/// Row-parallel BLAKE2s compression with Vector128: the 4x4 work matrix is held as four rows
/// a = v[0..3], b = v[4..7], c = v[8..11], d = v[12..15]; one vector G step computes the four
/// column G functions at once, then the rows are rotated so the diagonals line up as columns
/// (RFC 7693 section 3.2 evaluates the same eight G calls, four columns then four diagonals).
/// <code>
///   columns:  G(a0,b0,c0,d0) .. G(a3,b3,c3,d3)
///   diagonal: b &lt;&lt;= 1 lane, c &lt;&lt;= 2 lanes, d &lt;&lt;= 3 lanes, then columns again, then rotate back
/// </code>
/// The message words for each round are gathered by SIGMA (resolved at build time).
/// </summary>
internal static class Blake2sVector
{
    internal static bool IsSupported => Vector128.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Compress(ref Blake2sState state, ref byte block, ulong counter, bool isFinal)
    {
        ref uint h = ref Unsafe.As<Blake2sState, uint>(ref state);
        uint m0 = Word(ref block, 0), m1 = Word(ref block, 1), m2 = Word(ref block, 2), m3 = Word(ref block, 3);
        uint m4 = Word(ref block, 4), m5 = Word(ref block, 5), m6 = Word(ref block, 6), m7 = Word(ref block, 7);
        uint m8 = Word(ref block, 8), m9 = Word(ref block, 9), m10 = Word(ref block, 10), m11 = Word(ref block, 11);
        uint m12 = Word(ref block, 12), m13 = Word(ref block, 13), m14 = Word(ref block, 14), m15 = Word(ref block, 15);

        Vector128<uint> h0 = Vector128.LoadUnsafe(ref h);
        Vector128<uint> h1 = Vector128.LoadUnsafe(ref h, 4);
        Vector128<uint> a = h0;
        Vector128<uint> b = h1;
        Vector128<uint> c = Vector128.Create(Blake2sCore.IV0, Blake2sCore.IV1, Blake2sCore.IV2, Blake2sCore.IV3);
        Vector128<uint> d = Vector128.Create(
            Blake2sCore.IV4 ^ (uint)counter,
            Blake2sCore.IV5 ^ (uint)(counter >> 32),
            isFinal ? ~Blake2sCore.IV6 : Blake2sCore.IV6,
            Blake2sCore.IV7);

        // Round 0: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m0, m2, m4, m6), Vector128.Create(m1, m3, m5, m7));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m8, m10, m12, m14), Vector128.Create(m9, m11, m13, m15));
        Undiagonalize(ref b, ref c, ref d);
        // Round 1: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m14, m4, m9, m13), Vector128.Create(m10, m8, m15, m6));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m1, m0, m11, m5), Vector128.Create(m12, m2, m7, m3));
        Undiagonalize(ref b, ref c, ref d);
        // Round 2: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m11, m12, m5, m15), Vector128.Create(m8, m0, m2, m13));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m10, m3, m7, m9), Vector128.Create(m14, m6, m1, m4));
        Undiagonalize(ref b, ref c, ref d);
        // Round 3: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m7, m3, m13, m11), Vector128.Create(m9, m1, m12, m14));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m2, m5, m4, m15), Vector128.Create(m6, m10, m0, m8));
        Undiagonalize(ref b, ref c, ref d);
        // Round 4: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m9, m5, m2, m10), Vector128.Create(m0, m7, m4, m15));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m14, m11, m6, m3), Vector128.Create(m1, m12, m8, m13));
        Undiagonalize(ref b, ref c, ref d);
        // Round 5: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m2, m6, m0, m8), Vector128.Create(m12, m10, m11, m3));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m4, m7, m15, m1), Vector128.Create(m13, m5, m14, m9));
        Undiagonalize(ref b, ref c, ref d);
        // Round 6: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m12, m1, m14, m4), Vector128.Create(m5, m15, m13, m10));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m0, m6, m9, m8), Vector128.Create(m7, m3, m2, m11));
        Undiagonalize(ref b, ref c, ref d);
        // Round 7: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m13, m7, m12, m3), Vector128.Create(m11, m14, m1, m9));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m5, m15, m8, m2), Vector128.Create(m0, m4, m6, m10));
        Undiagonalize(ref b, ref c, ref d);
        // Round 8: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m6, m14, m11, m0), Vector128.Create(m15, m9, m3, m8));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m12, m13, m1, m10), Vector128.Create(m2, m7, m4, m5));
        Undiagonalize(ref b, ref c, ref d);
        // Round 9: columns, then diagonals
        G(ref a, ref b, ref c, ref d, Vector128.Create(m10, m8, m7, m1), Vector128.Create(m2, m4, m6, m5));
        Diagonalize(ref b, ref c, ref d);
        G(ref a, ref b, ref c, ref d, Vector128.Create(m15, m9, m3, m13), Vector128.Create(m11, m14, m12, m0));
        Undiagonalize(ref b, ref c, ref d);

        (h0 ^ a ^ c).StoreUnsafe(ref h);
        (h1 ^ b ^ d).StoreUnsafe(ref h, 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Word(ref byte block, int index)
    {
        uint w = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, index * 4));
        return BitConverter.IsLittleEndian ? w : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void G(ref Vector128<uint> a, ref Vector128<uint> b, ref Vector128<uint> c, ref Vector128<uint> d,
        Vector128<uint> mx, Vector128<uint> my)
    {
        a = a + b + mx;
        d = RotateRight(d ^ a, 16);
        c += d;
        b = RotateRight(b ^ c, 12);
        a = a + b + my;
        d = RotateRight(d ^ a, 8);
        c += d;
        b = RotateRight(b ^ c, 7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Diagonalize(ref Vector128<uint> b, ref Vector128<uint> c, ref Vector128<uint> d)
    {
        b = Vector128.Shuffle(b, Vector128.Create(1u, 2, 3, 0));
        c = Vector128.Shuffle(c, Vector128.Create(2u, 3, 0, 1));
        d = Vector128.Shuffle(d, Vector128.Create(3u, 0, 1, 2));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Undiagonalize(ref Vector128<uint> b, ref Vector128<uint> c, ref Vector128<uint> d)
    {
        b = Vector128.Shuffle(b, Vector128.Create(3u, 0, 1, 2));
        c = Vector128.Shuffle(c, Vector128.Create(2u, 3, 0, 1));
        d = Vector128.Shuffle(d, Vector128.Create(1u, 2, 3, 0));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> RotateRight(Vector128<uint> x, [ConstantExpected] byte n)
    {
        if (Avx512F.VL.IsSupported)
        {
            return Avx512F.VL.RotateRight(x, n); // one vprord
        }
        return Vector128.ShiftRightLogical(x, n) | Vector128.ShiftLeft(x, 32 - n);
    }
}
