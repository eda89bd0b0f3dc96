using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) with a 24-byte nonce, used by WireGuard's
/// cookie reply (whitepaper 5.4.7). One-shot: the key is imported for the call only.
/// </summary>
public static class XChaCha20Poly1305
{
    public const int NonceSize = 24;

    public static void Seal(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce24, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ChaCha20Poly1305.ValidateKey(key);
        ValidateNonce(nonce24);
        ChaCha20Poly1305.ValidateSeal(plaintext, destination);
        using Key k = Key.Import(AeadAlgorithm.XChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        AeadAlgorithm.XChaCha20Poly1305.Encrypt(k, nonce24, ad, plaintext, destination);
    }

    public static bool Open(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce24, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> ad, Span<byte> destination)
    {
        ChaCha20Poly1305.ValidateKey(key);
        ValidateNonce(nonce24);
        if (ciphertextAndTag.Length < ChaCha20Poly1305Key.TagSize)
        {
            return false;
        }
        ChaCha20Poly1305.ValidateOpen(ciphertextAndTag, destination);
        using Key k = Key.Import(AeadAlgorithm.XChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        return AeadAlgorithm.XChaCha20Poly1305.Decrypt(k, nonce24, ad, ciphertextAndTag, destination);
    }

    private static void ValidateNonce(ReadOnlySpan<byte> nonce24)
    {
        if (nonce24.Length != NonceSize)
        {
            throw new ArgumentException($"Nonce must be {NonceSize} bytes, not {nonce24.Length}.", nameof(nonce24));
        }
    }
}
