using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// One-shot IETF ChaCha20-Poly1305 for handshake messages, where each key is used once or
/// twice: the key is imported into NSec for the call and destroyed afterwards. For transport
/// data use <see cref="ChaCha20Poly1305Key"/>, which imports the key once.
/// </summary>
public static class ChaCha20Poly1305
{
    public static void Seal(ReadOnlySpan<byte> key, ulong counter, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ValidateKey(key);
        ValidateSeal(plaintext, destination);
        using Key k = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        ChaCha20Poly1305Key.SealCore(k, counter, plaintext, ad, destination);
    }

    public static bool Open(ReadOnlySpan<byte> key, ulong counter, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ValidateKey(key);
        if (ciphertextAndTag.Length < ChaCha20Poly1305Key.TagSize)
        {
            return false;
        }
        ValidateOpen(ciphertextAndTag, destination);
        using Key k = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        return ChaCha20Poly1305Key.OpenCore(k, counter, ciphertextAndTag, ad, destination);
    }

    /// <summary>
    /// RFC 8439 AEAD with an arbitrary 96-bit nonce. Not part of the public API (WireGuard
    /// only ever uses the counter nonce); it exists so the RFC test vectors, whose nonce does
    /// not start with four zero bytes, can be checked against the same NSec code path.
    /// </summary>
    internal static void SealWithNonce(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce12, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ValidateKey(key);
        ValidateSeal(plaintext, destination);
        using Key k = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        AeadAlgorithm.ChaCha20Poly1305.Encrypt(k, nonce12, ad, plaintext, destination);
    }

    internal static bool OpenWithNonce(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce12, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ValidateKey(key);
        if (ciphertextAndTag.Length < ChaCha20Poly1305Key.TagSize)
        {
            return false;
        }
        ValidateOpen(ciphertextAndTag, destination);
        using Key k = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        return AeadAlgorithm.ChaCha20Poly1305.Decrypt(k, nonce12, ad, ciphertextAndTag, destination);
    }

    internal static void ValidateKey(ReadOnlySpan<byte> key)
    {
        if (key.Length != ChaCha20Poly1305Key.KeySize)
        {
            throw new ArgumentException($"Key must be {ChaCha20Poly1305Key.KeySize} bytes, not {key.Length}.", nameof(key));
        }
    }

    internal static void ValidateSeal(ReadOnlySpan<byte> plaintext, Span<byte> destination)
    {
        if (destination.Length != plaintext.Length + ChaCha20Poly1305Key.TagSize)
        {
            throw new ArgumentException("Destination must be plaintext length + 16 bytes.", nameof(destination));
        }
        RejectPartialOverlap(plaintext, destination);
    }

    internal static void ValidateOpen(ReadOnlySpan<byte> ciphertextAndTag, Span<byte> destination)
    {
        if (destination.Length != ciphertextAndTag.Length - ChaCha20Poly1305Key.TagSize)
        {
            throw new ArgumentException("Destination must be ciphertext length - 16 bytes.", nameof(destination));
        }
        RejectPartialOverlap(ciphertextAndTag, destination);
    }

    /// <summary>
    /// In place means "destination starts where the source starts". A shifted overlap would
    /// let the cipher overwrite input it has not read yet, so it is refused.
    /// </summary>
    private static void RejectPartialOverlap(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination)
    {
        if (source.Overlaps(destination, out int offset) && offset != 0)
        {
            throw new ArgumentException("Destination overlaps the input at a different offset; in place requires the same start.", nameof(destination));
        }
    }
}
