using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// HMAC-BLAKE2s (RFC 2104 over BLAKE2s-256, 64-byte block) and the HKDF-style KDF of the
/// WireGuard whitepaper, section 5.4:
/// <code>
///   T0 = HMAC(chainingKey, input)
///   T1 = HMAC(T0, 0x01)
///   T2 = HMAC(T0, T1 || 0x02)
///   T3 = HMAC(T0, T2 || 0x03)
/// </code>
/// </summary>
[SkipLocalsInit]
public static class WireGuardKdf
{
    private const int HmacBlockSize = Blake2s.BlockSize;

    /// <summary>HMAC-BLAKE2s-256. output32 must be exactly 32 bytes. Keys longer than 64 bytes are hashed first.</summary>
    public static void Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> output32)
    {
        RequireHashSize(output32.Length, nameof(output32));
        HmacCore(key, data, default, output32);
    }

    public static void Kdf1(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1)
    {
        RequireHashSize(t1.Length, nameof(t1));
        KdfCore(chainingKey, input, t1, default, default, 1);
    }

    public static void Kdf2(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1, Span<byte> t2)
    {
        RequireHashSize(t1.Length, nameof(t1));
        RequireHashSize(t2.Length, nameof(t2));
        KdfCore(chainingKey, input, t1, t2, default, 2);
    }

    public static void Kdf3(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input, Span<byte> t1, Span<byte> t2, Span<byte> t3)
    {
        RequireHashSize(t1.Length, nameof(t1));
        RequireHashSize(t2.Length, nameof(t2));
        RequireHashSize(t3.Length, nameof(t3));
        KdfCore(chainingKey, input, t1, t2, t3, 3);
    }

    private static void RequireHashSize(int length, string name)
    {
        if (length != Blake2s.HashSize)
        {
            throw new ArgumentException($"Output must be {Blake2s.HashSize} bytes, not {length}.", name);
        }
    }

    private static void KdfCore(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> input,
        Span<byte> t1, Span<byte> t2, Span<byte> t3, int count)
    {
        // Outputs may alias chainingKey or input (the handshake writes the new chaining key
        // over the old one), so every T is computed into stack temporaries and copied at the end.
        Span<byte> t0 = stackalloc byte[Blake2s.HashSize];
        Span<byte> r1 = stackalloc byte[Blake2s.HashSize];
        Span<byte> r2 = stackalloc byte[Blake2s.HashSize];
        Span<byte> r3 = stackalloc byte[Blake2s.HashSize];
        ReadOnlySpan<byte> one = [0x01];
        ReadOnlySpan<byte> two = [0x02];
        ReadOnlySpan<byte> three = [0x03];

        HmacCore(chainingKey, input, default, t0);
        HmacCore(t0, one, default, r1);
        if (count >= 2)
        {
            HmacCore(t0, r1, two, r2);
        }
        if (count >= 3)
        {
            HmacCore(t0, r2, three, r3);
        }

        r1.CopyTo(t1);
        if (count >= 2)
        {
            r2.CopyTo(t2);
        }
        if (count >= 3)
        {
            r3.CopyTo(t3);
        }

        CryptographicOperations.ZeroMemory(t0);
        CryptographicOperations.ZeroMemory(r1);
        CryptographicOperations.ZeroMemory(r2);
        CryptographicOperations.ZeroMemory(r3);
    }

    /// <summary>HMAC(key, data1 || data2) into output (32 bytes); output may alias the inputs.</summary>
    private static void HmacCore(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data1, ReadOnlySpan<byte> data2, Span<byte> output)
    {
        Span<byte> pad = stackalloc byte[HmacBlockSize];
        Span<byte> inner = stackalloc byte[Blake2s.HashSize];
        pad.Clear();

        // RFC 2104: K' = H(K) if K is longer than the block, else K zero padded to the block.
        if (key.Length > HmacBlockSize)
        {
            Blake2s.Hash(key, pad.Slice(0, Blake2s.HashSize));
        }
        else
        {
            key.CopyTo(pad);
        }

        XorPad(pad, 0x36);
        var hasher = new Blake2sHasher(Blake2s.HashSize);
        hasher.Update(pad);
        hasher.Update(data1);
        hasher.Update(data2);
        hasher.Finish(inner);

        XorPad(pad, 0x36 ^ 0x5c); // ipad -> opad without keeping K' around separately
        hasher = new Blake2sHasher(Blake2s.HashSize);
        hasher.Update(pad);
        hasher.Update(inner);
        hasher.Finish(output);

        CryptographicOperations.ZeroMemory(pad);
        CryptographicOperations.ZeroMemory(inner);
    }

    private static void XorPad(Span<byte> pad, byte value)
    {
        for (int i = 0; i < pad.Length; i++)
        {
            pad[i] ^= value;
        }
    }
}
