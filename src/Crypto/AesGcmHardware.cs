using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace Gateway.Crypto;

/// <summary>
/// AES-GCM (NIST SP 800-38D) on the CPU's AES-NI and PCLMULQDQ instructions, for the ESP data
/// path. Why not only .NET's <see cref="AesGcm"/>: on Linux it goes through OpenSSL 3.0's EVP
/// interface, whose set-up per call (new nonce, AAD, final, tag control) costs about a microsecond
/// on this machine, more than sealing a whole 1420-byte packet, so AES-GCM lost to
/// ChaCha20-Poly1305 at ESP packet sizes although the cipher itself is several times faster
/// (docs/benchmarks.md). Here the key schedule and the GHASH powers are computed once per key;
/// a seal is counter-mode AES eight blocks at a time with GHASH over four blocks per reduction
/// (the aggregated reduction of Gueron and Kounavis, "Intel Carry-Less Multiplication Instruction
/// and its Usage for Computing the GCM Mode", 2010), in place, with no allocation, and a forged
/// packet is refused by a constant-time tag comparison before anything is decrypted.
/// </summary>
/// <remarks>Checked against the GCM test vectors and, on random inputs, against .NET's
/// <see cref="AesGcm"/> (AesGcmKeyTests). Only where <see cref="IsSupported"/>; elsewhere
/// <see cref="AesGcmKey"/> uses .NET's implementation.</remarks>
[SkipLocalsInit]
internal sealed class AesGcmHardware : IDisposable
{
    /// <summary>True when the CPU has the instructions this implementation needs (x86-64).</summary>
    public static bool IsSupported => X86Aes.IsSupported && Pclmulqdq.IsSupported && Ssse3.IsSupported;

    private readonly Vector128<byte>[] _roundKeys;
    private readonly int _rounds;
    // H, H^2, H^3, H^4 in GHASH's bit-reflected domain (bytes reversed), for 4-block aggregation.
    private readonly Vector128<ulong>[] _h = new Vector128<ulong>[4];

    private static readonly Vector128<byte> ByteReverse = Vector128.Create((byte)15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

    public AesGcmHardware(ReadOnlySpan<byte> key)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("AES-NI and PCLMULQDQ are needed.");
        if (key.Length is not (16 or 24 or 32)) throw new ArgumentException("An AES key is 16, 24 or 32 bytes.", nameof(key));
        _rounds = key.Length / 4 + 6;
        _roundKeys = ExpandKey(key, _rounds);
        var h = Ssse3.Shuffle(EncryptBlock(Vector128<byte>.Zero), ByteReverse).AsUInt64();
        _h[0] = h;
        _h[1] = GfMul(h, h);
        _h[2] = GfMul(_h[1], h);
        _h[3] = GfMul(_h[2], h);
    }

    /// <summary>FIPS-197 key expansion; SubWord from AESKEYGENASSIST, so no S-box table is needed.</summary>
    private static Vector128<byte>[] ExpandKey(ReadOnlySpan<byte> key, int rounds)
    {
        int nk = key.Length / 4;
        int words = 4 * (rounds + 1);
        Span<uint> w = stackalloc uint[60];
        for (int i = 0; i < nk; i++) w[i] = BinaryPrimitives.ReadUInt32LittleEndian(key[(4 * i)..]);
        uint rcon = 1;
        for (int i = nk; i < words; i++)
        {
            uint t = w[i - 1];
            if (i % nk == 0)
            {
                t = SubWord(uint.RotateRight(t, 8)) ^ rcon; // RotWord on little-endian words
                rcon = (rcon << 1) ^ ((rcon >> 7) * 0x11b);
            }
            else if (nk > 6 && i % nk == 4)
            {
                t = SubWord(t);
            }
            w[i] = w[i - nk] ^ t;
        }
        var keys = new Vector128<byte>[rounds + 1];
        for (int r = 0; r <= rounds; r++) keys[r] = Vector128.Create(w[4 * r], w[4 * r + 1], w[4 * r + 2], w[4 * r + 3]).AsByte();
        w.Clear();
        return keys;
    }

    private static uint SubWord(uint word) =>
        // AESKEYGENASSIST's first dword is SubWord of the second input dword.
        X86Aes.KeygenAssist(Vector128.Create(0u, word, 0u, 0u).AsByte(), 0).AsUInt32().GetElement(0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<byte> EncryptBlock(Vector128<byte> block)
    {
        ref Vector128<byte> rk = ref MemoryMarshal.GetArrayDataReference(_roundKeys);
        block = Sse2.Xor(block, rk);
        for (int r = 1; r < _rounds; r++) block = X86Aes.Encrypt(block, Unsafe.Add(ref rk, r));
        return X86Aes.EncryptLast(block, Unsafe.Add(ref rk, _rounds));
    }

    /// <summary>Seals <paramref name="data"/> in place; nonce is 12 bytes; the tag is 12 or 16 bytes.</summary>
    public void Encrypt(ReadOnlySpan<byte> nonce, Span<byte> data, ReadOnlySpan<byte> associatedData, Span<byte> tag)
    {
        Vector128<ulong> y = Vector128<ulong>.Zero;
        y = GhashPadded(y, associatedData);
        CounterMode(nonce, data, ref y, encrypt: true);
        WriteTag(nonce, y, associatedData.Length, data.Length, tag);
    }

    /// <summary>Checks the tag and, only when it verifies, decrypts <paramref name="data"/> in place.</summary>
    public bool Decrypt(ReadOnlySpan<byte> nonce, Span<byte> data, ReadOnlySpan<byte> tag, ReadOnlySpan<byte> associatedData)
    {
        Vector128<ulong> y = Vector128<ulong>.Zero;
        y = GhashPadded(y, associatedData);
        y = GhashPadded(y, data);
        Span<byte> expected = stackalloc byte[16];
        WriteTag(nonce, y, associatedData.Length, data.Length, expected);
        if (!CryptographicOperations.FixedTimeEquals(expected[..tag.Length], tag))
        {
            return false;
        }
        Vector128<ulong> unused = default;
        CounterMode(nonce, data, ref unused, encrypt: false);
        return true;
    }

    private void WriteTag(ReadOnlySpan<byte> nonce, Vector128<ulong> y, int aadLength, int dataLength, Span<byte> tag)
    {
        // The length block: bit lengths of the AAD and the ciphertext, big-endian 64-bit each.
        Span<byte> lengths = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(lengths, (ulong)aadLength * 8);
        BinaryPrimitives.WriteUInt64BigEndian(lengths[8..], (ulong)dataLength * 8);
        y = GfMul(Sse2.Xor(y, Reflect(lengths)), _h[0]);
        var s = Ssse3.Shuffle(y.AsByte(), ByteReverse);
        var full = Sse2.Xor(s, EncryptBlock(Counter(nonce, 1)));
        Span<byte> block = stackalloc byte[16];
        full.CopyTo(block);
        block[..tag.Length].CopyTo(tag);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Counter(ReadOnlySpan<byte> nonce, uint n)
    {
        // J0 = nonce || 0^31 || 1; counter i = nonce || BE32(i).
        return Vector128.Create(
            BinaryPrimitives.ReadUInt32LittleEndian(nonce),
            BinaryPrimitives.ReadUInt32LittleEndian(nonce[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(nonce[8..]),
            BinaryPrimitives.ReverseEndianness(n)).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Reflect(ReadOnlySpan<byte> block16) =>
        Ssse3.Shuffle(Vector128.Create<byte>(block16), ByteReverse).AsUInt64();

    /// <summary>GHASH over <paramref name="input"/> zero-padded to whole blocks, four blocks per reduction.</summary>
    private Vector128<ulong> GhashPadded(Vector128<ulong> y, ReadOnlySpan<byte> input)
    {
        int i = 0;
        for (; i + 64 <= input.Length; i += 64)
        {
            y = Ghash4(y, Reflect(input[i..]), Reflect(input[(i + 16)..]), Reflect(input[(i + 32)..]), Reflect(input[(i + 48)..]));
        }
        for (; i + 16 <= input.Length; i += 16)
        {
            y = GfMul(Sse2.Xor(y, Reflect(input[i..])), _h[0]);
        }
        if (i < input.Length)
        {
            Span<byte> last = stackalloc byte[16];
            last.Clear();
            input[i..].CopyTo(last);
            y = GfMul(Sse2.Xor(y, Reflect(last)), _h[0]);
        }
        return y;
    }

    /// <summary>Y = (Y ^ X1)·H^4 ^ X2·H^3 ^ X3·H^2 ^ X4·H with one reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<ulong> Ghash4(Vector128<ulong> y, Vector128<ulong> x1, Vector128<ulong> x2, Vector128<ulong> x3, Vector128<ulong> x4)
    {
        Vector128<ulong> lo = Vector128<ulong>.Zero, hi = Vector128<ulong>.Zero;
        MulAccumulate(Sse2.Xor(y, x1), _h[3], ref lo, ref hi);
        MulAccumulate(x2, _h[2], ref lo, ref hi);
        MulAccumulate(x3, _h[1], ref lo, ref hi);
        MulAccumulate(x4, _h[0], ref lo, ref hi);
        return Reduce(lo, hi);
    }

    /// <summary>Counter mode from counter 2, eight blocks at a time; GHASH over the ciphertext when encrypting.</summary>
    private void CounterMode(ReadOnlySpan<byte> nonce, Span<byte> data, ref Vector128<ulong> y, bool encrypt)
    {
        ref Vector128<byte> rk = ref MemoryMarshal.GetArrayDataReference(_roundKeys);
        uint n = 2;
        int i = 0;
        for (; i + 128 <= data.Length; i += 128, n += 8)
        {
            var k0 = Sse2.Xor(Counter(nonce, n), rk);
            var k1 = Sse2.Xor(Counter(nonce, n + 1), rk);
            var k2 = Sse2.Xor(Counter(nonce, n + 2), rk);
            var k3 = Sse2.Xor(Counter(nonce, n + 3), rk);
            var k4 = Sse2.Xor(Counter(nonce, n + 4), rk);
            var k5 = Sse2.Xor(Counter(nonce, n + 5), rk);
            var k6 = Sse2.Xor(Counter(nonce, n + 6), rk);
            var k7 = Sse2.Xor(Counter(nonce, n + 7), rk);
            for (int r = 1; r < _rounds; r++)
            {
                var key = Unsafe.Add(ref rk, r);
                k0 = X86Aes.Encrypt(k0, key);
                k1 = X86Aes.Encrypt(k1, key);
                k2 = X86Aes.Encrypt(k2, key);
                k3 = X86Aes.Encrypt(k3, key);
                k4 = X86Aes.Encrypt(k4, key);
                k5 = X86Aes.Encrypt(k5, key);
                k6 = X86Aes.Encrypt(k6, key);
                k7 = X86Aes.Encrypt(k7, key);
            }
            var last = Unsafe.Add(ref rk, _rounds);
            var chunk = data.Slice(i, 128);
            var c0 = Sse2.Xor(X86Aes.EncryptLast(k0, last), Vector128.Create<byte>(chunk));
            var c1 = Sse2.Xor(X86Aes.EncryptLast(k1, last), Vector128.Create<byte>(chunk[16..]));
            var c2 = Sse2.Xor(X86Aes.EncryptLast(k2, last), Vector128.Create<byte>(chunk[32..]));
            var c3 = Sse2.Xor(X86Aes.EncryptLast(k3, last), Vector128.Create<byte>(chunk[48..]));
            var c4 = Sse2.Xor(X86Aes.EncryptLast(k4, last), Vector128.Create<byte>(chunk[64..]));
            var c5 = Sse2.Xor(X86Aes.EncryptLast(k5, last), Vector128.Create<byte>(chunk[80..]));
            var c6 = Sse2.Xor(X86Aes.EncryptLast(k6, last), Vector128.Create<byte>(chunk[96..]));
            var c7 = Sse2.Xor(X86Aes.EncryptLast(k7, last), Vector128.Create<byte>(chunk[112..]));
            c0.CopyTo(chunk);
            c1.CopyTo(chunk[16..]);
            c2.CopyTo(chunk[32..]);
            c3.CopyTo(chunk[48..]);
            c4.CopyTo(chunk[64..]);
            c5.CopyTo(chunk[80..]);
            c6.CopyTo(chunk[96..]);
            c7.CopyTo(chunk[112..]);
            if (encrypt)
            {
                y = Ghash4(y, Ssse3.Shuffle(c0, ByteReverse).AsUInt64(), Ssse3.Shuffle(c1, ByteReverse).AsUInt64(),
                    Ssse3.Shuffle(c2, ByteReverse).AsUInt64(), Ssse3.Shuffle(c3, ByteReverse).AsUInt64());
                y = Ghash4(y, Ssse3.Shuffle(c4, ByteReverse).AsUInt64(), Ssse3.Shuffle(c5, ByteReverse).AsUInt64(),
                    Ssse3.Shuffle(c6, ByteReverse).AsUInt64(), Ssse3.Shuffle(c7, ByteReverse).AsUInt64());
            }
        }
        Span<byte> block = stackalloc byte[16];
        for (; i < data.Length; i += 16, n++)
        {
            var keystream = EncryptBlock(Counter(nonce, n));
            var rest = data[i..];
            if (rest.Length >= 16)
            {
                var c = Sse2.Xor(keystream, Vector128.Create<byte>(rest));
                c.CopyTo(rest);
                if (encrypt) y = GfMul(Sse2.Xor(y, Ssse3.Shuffle(c, ByteReverse).AsUInt64()), _h[0]);
            }
            else
            {
                block.Clear();
                rest.CopyTo(block);
                var c = Sse2.Xor(keystream, Vector128.Create<byte>(block));
                c.CopyTo(block);
                block[..rest.Length].CopyTo(rest);
                if (encrypt)
                {
                    block[rest.Length..].Clear(); // GHASH pads the partial ciphertext block with zeros
                    y = GfMul(Sse2.Xor(y, Reflect(block)), _h[0]);
                }
            }
        }
    }

    /// <summary>One GF(2^128) product in GHASH's reflected domain (Gueron-Kounavis, figure 5).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> GfMul(Vector128<ulong> a, Vector128<ulong> b)
    {
        Vector128<ulong> lo = Vector128<ulong>.Zero, hi = Vector128<ulong>.Zero;
        MulAccumulate(a, b, ref lo, ref hi);
        return Reduce(lo, hi);
    }

    /// <summary>The 256-bit carry-less product of a and b, XORed into hi:lo.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MulAccumulate(Vector128<ulong> a, Vector128<ulong> b, ref Vector128<ulong> lo, ref Vector128<ulong> hi)
    {
        var t3 = Pclmulqdq.CarrylessMultiply(a, b, 0x00);
        var t4 = Pclmulqdq.CarrylessMultiply(a, b, 0x10);
        var t5 = Pclmulqdq.CarrylessMultiply(a, b, 0x01);
        var t6 = Pclmulqdq.CarrylessMultiply(a, b, 0x11);
        t4 = Sse2.Xor(t4, t5);
        lo = Sse2.Xor(lo, Sse2.Xor(t3, Sse2.ShiftLeftLogical128BitLane(t4, 8)));
        hi = Sse2.Xor(hi, Sse2.Xor(t6, Sse2.ShiftRightLogical128BitLane(t4, 8)));
    }

    /// <summary>Shifts hi:lo left by one bit (the reflected domain) and reduces modulo x^128 + x^7 + x^2 + x + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Reduce(Vector128<ulong> lo64, Vector128<ulong> hi64)
    {
        var t3 = lo64.AsUInt32();
        var t6 = hi64.AsUInt32();
        var t7 = Sse2.ShiftRightLogical(t3, 31);
        var t8 = Sse2.ShiftRightLogical(t6, 31);
        t3 = Sse2.ShiftLeftLogical(t3, 1);
        t6 = Sse2.ShiftLeftLogical(t6, 1);
        var t9 = Sse2.ShiftRightLogical128BitLane(t7, 12);
        t8 = Sse2.ShiftLeftLogical128BitLane(t8, 4);
        t7 = Sse2.ShiftLeftLogical128BitLane(t7, 4);
        t3 = Sse2.Or(t3, t7);
        t6 = Sse2.Or(Sse2.Or(t6, t8), t9);
        t7 = Sse2.ShiftLeftLogical(t3, 31);
        t8 = Sse2.ShiftLeftLogical(t3, 30);
        t9 = Sse2.ShiftLeftLogical(t3, 25);
        t7 = Sse2.Xor(Sse2.Xor(t7, t8), t9);
        t8 = Sse2.ShiftRightLogical128BitLane(t7, 4);
        t7 = Sse2.ShiftLeftLogical128BitLane(t7, 12);
        t3 = Sse2.Xor(t3, t7);
        var t2 = Sse2.ShiftRightLogical(t3, 1);
        var t4 = Sse2.ShiftRightLogical(t3, 2);
        var t5 = Sse2.ShiftRightLogical(t3, 7);
        t2 = Sse2.Xor(Sse2.Xor(Sse2.Xor(t2, t4), t5), t8);
        t3 = Sse2.Xor(t3, t2);
        return Sse2.Xor(t6, t3).AsUInt64();
    }

    /// <summary>Clears the key schedule and the GHASH powers.</summary>
    public void Dispose()
    {
        Array.Clear(_roundKeys);
        Array.Clear(_h);
    }
}
