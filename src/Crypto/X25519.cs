using System.Security.Cryptography;
using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// X25519 Diffie-Hellman (RFC 7748) over raw 32-byte keys, via NSec/libsodium.
/// </summary>
/// <remarks>
/// NSec 26.4.0 lets a SharedSecret be exported raw when created with
/// <see cref="KeyExportPolicies.AllowPlaintextExport"/>, so no direct libsodium P/Invoke is
/// needed. libsodium refuses small-order peer points and all-zero results; NSec reports
/// that as a null SharedSecret. We additionally check the exported bytes for all-zero so
/// that the contract ("false = low-order peer key") does not rest on one library detail.
/// Each call imports the private key into NSec secure memory (tens of microseconds and a
/// few small allocations): acceptable for handshakes, which is the only place agreement runs.
/// </remarks>
public static class X25519
{
    public const int KeySize = 32;

    /// <summary>32 random bytes, clamped exactly as `wg genkey` does (RFC 7748 section 5 decodeScalar25519).</summary>
    public static void GeneratePrivateKey(Span<byte> privateKey)
    {
        RequireKeySize(privateKey.Length, nameof(privateKey));
        RandomNumberGenerator.Fill(privateKey);
        Clamp(privateKey);
    }

    internal static void Clamp(Span<byte> privateKey)
    {
        privateKey[0] &= 248;
        privateKey[31] = (byte)((privateKey[31] & 127) | 64);
    }

    public static void DerivePublicKey(ReadOnlySpan<byte> privateKey, Span<byte> publicKey)
    {
        RequireKeySize(privateKey.Length, nameof(privateKey));
        RequireKeySize(publicKey.Length, nameof(publicKey));
        DerivePublicKeyCore(privateKey, publicKey);
    }

    private static void DerivePublicKeyCore(ReadOnlySpan<byte> privateKey, Span<byte> publicKey)
    {
        var importParameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.None };
        using Key key = Key.Import(KeyAgreementAlgorithm.X25519, privateKey, KeyBlobFormat.RawPrivateKey, in importParameters);
        if (!key.PublicKey.TryExport(KeyBlobFormat.RawPublicKey, publicKey, out int written) || written != KeySize)
        {
            throw new CryptographicException("X25519 public key export failed.");
        }
    }

    /// <summary>
    /// sharedSecret = X25519(privateKey, peerPublicKey). Returns false, with sharedSecret
    /// zeroed, when the peer key is of small order (the result would be all zero): the
    /// caller must drop the message and never use the secret.
    /// </summary>
    public static bool TryAgree(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> peerPublicKey, Span<byte> sharedSecret)
    {
        RequireKeySize(privateKey.Length, nameof(privateKey));
        RequireKeySize(peerPublicKey.Length, nameof(peerPublicKey));
        RequireKeySize(sharedSecret.Length, nameof(sharedSecret));
        return TryAgreeCore(privateKey, peerPublicKey, sharedSecret);
    }

    private static bool TryAgreeCore(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> peerPublicKey, Span<byte> sharedSecret)
    {
        sharedSecret.Clear();
        if (!PublicKey.TryImport(KeyAgreementAlgorithm.X25519, peerPublicKey, KeyBlobFormat.RawPublicKey, out PublicKey? peer) || peer is null)
        {
            return false;
        }

        var importParameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.None };
        var secretParameters = new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };
        using Key key = Key.Import(KeyAgreementAlgorithm.X25519, privateKey, KeyBlobFormat.RawPrivateKey, in importParameters);
        using SharedSecret? secret = KeyAgreementAlgorithm.X25519.Agree(key, peer, in secretParameters);
        if (secret is null)
        {
            return false;
        }
        if (!secret.TryExport(SharedSecretBlobFormat.RawSharedSecret, sharedSecret, out int written) || written != KeySize)
        {
            sharedSecret.Clear();
            return false;
        }
        if (IsAllZero(sharedSecret))
        {
            return false;
        }
        return true;
    }

    /// <summary>Constant-time all-zero test.</summary>
    internal static bool IsAllZero(ReadOnlySpan<byte> bytes)
    {
        int acc = 0;
        foreach (byte b in bytes)
        {
            acc |= b;
        }
        return acc == 0;
    }

    private static void RequireKeySize(int length, string name)
    {
        if (length != KeySize)
        {
            throw new ArgumentException($"X25519 keys are {KeySize} bytes, not {length}.", name);
        }
    }
}
