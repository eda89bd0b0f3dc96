using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// An IETF ChaCha20-Poly1305 (RFC 8439) key imported once into NSec/libsodium secure memory
/// and used for many packets. The 96-bit nonce is WireGuard's: 4 zero bytes followed by the
/// 64-bit little-endian counter.
/// </summary>
/// <remarks>
/// NSec.Cryptography 26.4.0 accepts identical plaintext and ciphertext spans (libsodium's
/// crypto_aead_chacha20poly1305_ietf_encrypt/decrypt are documented to work in place), so
/// sealing and opening in place cost no copy; checked by the tests. Key.Import is expensive
/// (it allocates guarded secure memory), which is why the key is imported here once.
/// Seal and Open allocate nothing.
/// </remarks>
[SkipLocalsInit]
public sealed class ChaCha20Poly1305Key : IDisposable
{
    public const int KeySize = 32, TagSize = 16;
    internal const int NonceSize = 12;

    private readonly Key _key;
    private bool _disposed;

    public ChaCha20Poly1305Key(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize)
        {
            throw new ArgumentException($"ChaCha20-Poly1305 key must be {KeySize} bytes, not {key.Length}.", nameof(key));
        }
        _key = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
    }

    /// <summary>Seals plaintext into destination (plaintext.Length + 16 bytes). destination may start where plaintext starts.</summary>
    public void Seal(ulong counter, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associatedData, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ChaCha20Poly1305.ValidateSeal(plaintext, destination);
        SealCore(_key, counter, plaintext, associatedData, destination);
    }

    /// <summary>
    /// Opens ciphertextAndTag into destination (length - 16 bytes); false on authentication
    /// failure (or input shorter than a tag). On failure libsodium zeroes destination, so no
    /// unauthenticated plaintext is ever exposed (when opening in place, the ciphertext is gone).
    /// </summary>
    public bool Open(ulong counter, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> associatedData, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (ciphertextAndTag.Length < TagSize)
        {
            return false;
        }
        ChaCha20Poly1305.ValidateOpen(ciphertextAndTag, destination);
        return OpenCore(_key, counter, ciphertextAndTag, associatedData, destination);
    }

    /// <summary>Destroys the key: NSec zeroes and frees its secure memory.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _key.Dispose();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WriteNonce(ulong counter, Span<byte> nonce)
    {
        // WireGuard (whitepaper 5.4.6): 32 zero bits, then the counter little-endian.
        BinaryPrimitives.WriteUInt32LittleEndian(nonce, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(nonce.Slice(4), counter);
    }

    internal static void SealCore(Key key, ulong counter, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        WriteNonce(counter, nonce);
        AeadAlgorithm.ChaCha20Poly1305.Encrypt(key, nonce, ad, plaintext, destination);
    }

    internal static bool OpenCore(Key key, ulong counter, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        Span<byte> nonce = stackalloc byte[NonceSize];
        WriteNonce(counter, nonce);
        return AeadAlgorithm.ChaCha20Poly1305.Decrypt(key, nonce, ad, ciphertextAndTag, destination);
    }
}
