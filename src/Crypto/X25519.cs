using Gateway.Crypto.Interop;
using System.Security.Cryptography;
using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// X25519 Diffie-Hellman (RFC 7748) over raw 32-byte keys, via NSec/libsodium.
/// </summary>
/// <remarks>
/// Calls libsodium's crypto_scalarmult_curve25519 directly (the library NSec ships): going
/// through NSec would import the private key into guarded memory on every call (an mmap and
/// mprotect per key, hundreds of microseconds under load), and a handshake does four
/// agreements. Keys stay in the caller's spans; nothing is allocated. libsodium refuses
/// small-order peer points; the all-zero check is repeated here so that the contract
/// ("false = low-order peer key") does not rest on one library detail.
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

    private static unsafe void DerivePublicKeyCore(ReadOnlySpan<byte> privateKey, Span<byte> publicKey)
    {
        Sodium.EnsureInitialized();
        fixed (byte* n = privateKey)
        fixed (byte* q = publicKey)
        {
            if (Sodium.CryptoScalarMultCurve25519Base(q, n) != 0)
            {
                throw new CryptographicException("X25519 public key derivation failed.");
            }
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

    private static unsafe bool TryAgreeCore(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> peerPublicKey, Span<byte> sharedSecret)
    {
        Sodium.EnsureInitialized();
        int result;
        fixed (byte* n = privateKey)
        fixed (byte* p = peerPublicKey)
        fixed (byte* q = sharedSecret)
        {
            // libsodium refuses small-order points (result -1, all-zero output).
            result = Sodium.CryptoScalarMultCurve25519(q, n, p);
        }
        // Belt and braces: the contract "false = no usable secret" must not rest on one library
        // detail, so an all-zero output is refused here as well.
        if (result != 0 || IsAllZero(sharedSecret))
        {
            sharedSecret.Clear();
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
