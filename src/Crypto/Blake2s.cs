using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// BLAKE2s (RFC 7693): 32-bit BLAKE2 with digests of 1..32 bytes and an optional key of
/// up to 32 bytes. WireGuard uses the 32-byte hash, the keyed 16-byte MAC (mac1/mac2)
/// and HMAC-BLAKE2s (see <see cref="WireGuardKdf"/>).
/// </summary>
[SkipLocalsInit]
public static class Blake2s
{
    public const int HashSize = 32;
    public const int BlockSize = 64;
    public const int MaxKeySize = 32;

    /// <summary>Unkeyed BLAKE2s; the digest length is output.Length (1..32).</summary>
    public static void Hash(ReadOnlySpan<byte> data, Span<byte> output)
    {
        ValidateOutput(output.Length);
        HashCore(default, data, output);
    }

    /// <summary>Keyed BLAKE2s (key 0..32 bytes, empty = unkeyed); digest length is output.Length (1..32).</summary>
    public static void Hash(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> output)
    {
        ValidateOutput(output.Length);
        ValidateKey(key.Length);
        HashCore(key, data, output);
    }

    internal static void ValidateOutput(int length)
    {
        if ((uint)(length - 1) >= HashSize)
        {
            throw new ArgumentException($"BLAKE2s output length must be 1..{HashSize} bytes, not {length}.", "output");
        }
    }

    internal static void ValidateKey(int length)
    {
        if (length > MaxKeySize)
        {
            throw new ArgumentException($"BLAKE2s key length must be 0..{MaxKeySize} bytes, not {length}.", "key");
        }
    }

    private static void HashCore(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> output)
    {
        Blake2sState h = default;
        Blake2sCore.Init(ref h, output.Length, key.Length);
        Blake2sBlock pad = default; // zero-filled: used for the key block and the last block
        ulong counter = 0;

        if (!key.IsEmpty)
        {
            // RFC 7693 section 3.3: a key is padded with zeros to one full block and
            // processed as the first block; it counts as 64 message bytes.
            key.CopyTo(pad);
            counter = BlockSize;
            bool keyIsLast = data.IsEmpty;
            Blake2sCore.Compress(ref h, ref MemoryMarshal.GetReference<byte>(pad), counter, keyIsLast);
            if (keyIsLast)
            {
                Finish(ref h, ref pad, output);
                return;
            }
            ((Span<byte>)pad).Clear();
        }

        // All full blocks except the last one (which needs the final flag, even if full).
        ref byte p = ref MemoryMarshal.GetReference(data);
        int remaining = data.Length;
        int offset = 0;
        while (remaining > BlockSize)
        {
            counter += BlockSize;
            Blake2sCore.Compress(ref h, ref Unsafe.Add(ref p, offset), counter, isFinal: false);
            offset += BlockSize;
            remaining -= BlockSize;
        }

        // Last block: 0..64 bytes, zero padded. (0 only for an empty unkeyed message.)
        data.Slice(offset).CopyTo(pad);
        counter += (ulong)remaining;
        Blake2sCore.Compress(ref h, ref MemoryMarshal.GetReference<byte>(pad), counter, isFinal: true);
        Finish(ref h, ref pad, output);
    }

    private static void Finish(ref Blake2sState h, ref Blake2sBlock pad, Span<byte> output)
    {
        Blake2sCore.WriteOutput(ref h, output);
        // The pad held key or message bytes and h is a keyed state: do not leave them on the stack.
        CryptographicOperations.ZeroMemory(pad);
        CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes((Span<uint>)h));
    }
}
