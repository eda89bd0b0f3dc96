using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using NSec.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// An IETF ChaCha20-Poly1305 (RFC 8439) key set up once and used for many packets. The 96-bit
/// nonce is WireGuard's: 4 zero bytes followed by the 64-bit little-endian counter.
/// </summary>
/// <remarks>
/// The key is imported once into libsodium (through NSec's secure memory) and, when OpenSSL 3's
/// libcrypto (which .NET already uses on Linux) is present and passes RFC 8439's vector, also
/// into OpenSSL EVP contexts. Messages of <see cref="OpenSslMinimumLength"/> bytes or more go to
/// OpenSSL, whose AVX2 ChaCha20 and Poly1305 seal a 1420-byte packet about a quarter faster here;
/// shorter ones (keepalives, TCP ACKs) to libsodium, whose fixed cost per call is lower. Setting
/// the environment variable <c>GATEWAY_AEAD=libsodium</c> leaves OpenSSL out. Both seal and open
/// in place (same start) without a copy, both produce the same bytes (tests compare them), and
/// Seal and Open allocate nothing. Dispose zeroes the key: OpenSSL clears its contexts when they
/// are freed, NSec its secure memory.
/// </remarks>
[SkipLocalsInit]
public sealed class ChaCha20Poly1305Key : IDisposable
{
    public const int KeySize = 32, TagSize = 16;
    internal const int NonceSize = 12;

    /// <summary>From this plaintext length on, OpenSSL seals and opens (when present); below it, libsodium.</summary>
    internal const int OpenSslMinimumLength = 512;

    private readonly Key _key;
    private readonly OpenSslChaCha20Poly1305? _openssl;
    private bool _disposed;

    /// <summary>Which implementations seal and open: "OpenSSL and libsodium" or "libsodium".</summary>
    internal static string Backend => OpenSslChaCha20Poly1305.IsSupported ? "OpenSSL and libsodium" : "libsodium";

    public ChaCha20Poly1305Key(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize)
        {
            throw new ArgumentException($"ChaCha20-Poly1305 key must be {KeySize} bytes, not {key.Length}.", nameof(key));
        }
        _key = Key.Import(AeadAlgorithm.ChaCha20Poly1305, key, KeyBlobFormat.RawSymmetricKey);
        if (OpenSslChaCha20Poly1305.IsSupported)
        {
            _openssl = new OpenSslChaCha20Poly1305(key);
        }
    }

    /// <summary>Seals plaintext into destination (plaintext.Length + 16 bytes). destination may start where plaintext starts.</summary>
    public void Seal(ulong counter, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associatedData, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ChaCha20Poly1305.ValidateSeal(plaintext, destination);
        if (plaintext.Length >= OpenSslMinimumLength && _openssl is { } openssl)
        {
            Span<byte> nonce = stackalloc byte[NonceSize];
            WriteNonce(counter, nonce);
            openssl.Seal(nonce, plaintext, associatedData, destination);
            return;
        }
        SealCore(_key, counter, plaintext, associatedData, destination);
    }

    /// <summary>
    /// Opens ciphertextAndTag into destination (length - 16 bytes); false on authentication
    /// failure (or input shorter than a tag). On failure destination is zeroed (by either implementation), so no
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
        if (ciphertextAndTag.Length - TagSize >= OpenSslMinimumLength && _openssl is { } openssl)
        {
            Span<byte> nonce = stackalloc byte[NonceSize];
            WriteNonce(counter, nonce);
            return openssl.Open(nonce, ciphertextAndTag, associatedData, destination);
        }
        return OpenCore(_key, counter, ciphertextAndTag, associatedData, destination);
    }

    /// <summary>Destroys the key: OpenSSL's contexts are cleared and freed and the raw key zeroed,
    /// or NSec zeroes and frees its secure memory.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _openssl?.Dispose();
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
