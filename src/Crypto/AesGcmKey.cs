using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// An AES-GCM key as ESP uses it (RFC 4106): an AES key (16, 24 or 32 bytes) plus a 4-byte salt,
/// expanded once per security association and used for many packets: on CPUs with AES-NI and
/// PCLMULQDQ by <see cref="AesGcmHardware"/> (no per-call set-up, a forged packet costs no
/// exception), elsewhere by .NET's <see cref="AesGcm"/> (OpenSSL's EVP context on Linux).
/// The 96-bit nonce is <c>salt || IV</c>, the IV being the 8 bytes ESP carries in each packet.
/// </summary>
/// <remarks>
/// <para>Seal and Open work in place (ciphertext starting where plaintext starts) and allocate
/// nothing; checked by the tests. A tag that does not verify gives <c>false</c> and a cleared
/// plaintext span (with .NET's <see cref="AesGcm"/>, which reports it by throwing, at the cost of
/// one caught exception; the hardware path compares in constant time and throws nothing).</para>
/// <para>The tag (ESP's ICV) is 12 or 16 bytes (RFC 4106 also allows 8; Cilium and the Linux
/// kernel's rfc4106 offer 96 and 128 bits, and 8-byte tags are too weak for a data path).</para>
/// <para>Dispose clears the expanded key (or frees the OpenSSL context, which does) and zeroes the salt.</para>
/// </remarks>
[SkipLocalsInit]
public sealed class AesGcmKey : IDisposable
{
    public const int SaltSize = 4, IvSize = 8, NonceSize = 12;
    public const int ShortTagSize = 12, TagSize = 16;

    private readonly AesGcm? _aes;
    private readonly AesGcmHardware? _hardware;
    private readonly byte[] _salt = new byte[SaltSize];
    private bool _disposed;

    /// <summary>Imports <paramref name="keyAndSalt"/> (AES key followed by the 4-byte salt, as in
    /// Linux xfrm's rfc4106 and Cilium's keys file: 20, 28 or 36 bytes).</summary>
    public AesGcmKey(ReadOnlySpan<byte> keyAndSalt, int tagSize)
        : this(keyAndSalt, tagSize, useHardware: AesGcmHardware.IsSupported)
    {
    }

    /// <summary>As the public constructor; <paramref name="useHardware"/> false takes .NET's
    /// <see cref="AesGcm"/> even where <see cref="AesGcmHardware"/> runs (tests, benchmarks).</summary>
    internal AesGcmKey(ReadOnlySpan<byte> keyAndSalt, int tagSize, bool useHardware)
    {
        int keyLength = keyAndSalt.Length - SaltSize;
        if (keyLength is not (16 or 24 or 32))
        {
            throw new ArgumentException($"An rfc4106 AES-GCM key is 16, 24 or 32 bytes plus a {SaltSize}-byte salt (20, 28 or 36 bytes), not {keyAndSalt.Length}.", nameof(keyAndSalt));
        }
        if (tagSize is not (ShortTagSize or TagSize))
        {
            throw new ArgumentException($"The AES-GCM tag is {ShortTagSize} or {TagSize} bytes, not {tagSize}.", nameof(tagSize));
        }
        if (useHardware)
        {
            _hardware = new AesGcmHardware(keyAndSalt[..keyLength]);
        }
        else
        {
            _aes = new AesGcm(keyAndSalt[..keyLength], tagSize);
        }
        keyAndSalt[keyLength..].CopyTo(_salt);
        KeySize = keyLength;
        TagSizeInBytes = tagSize;
    }

    /// <summary>The AES key length in bytes (without the salt).</summary>
    public int KeySize { get; }

    /// <summary>The tag (ICV) length in bytes: 12 or 16.</summary>
    public int TagSizeInBytes { get; }

    /// <summary>True when the seal runs on <see cref="AesGcmHardware"/>.</summary>
    internal bool UsesHardware => _hardware is not null;

    /// <summary>
    /// Encrypts <paramref name="plaintext"/> into <paramref name="ciphertext"/> (same length; may
    /// be the same span) and writes the tag into <paramref name="tag"/> (<see cref="TagSizeInBytes"/>).
    /// </summary>
    public void Seal(ReadOnlySpan<byte> iv, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associatedData, Span<byte> ciphertext, Span<byte> tag)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Validate(iv, plaintext.Length, ciphertext, tag.Length);
        RejectPartialOverlap(plaintext, ciphertext);
        Span<byte> nonce = stackalloc byte[NonceSize];
        WriteNonce(iv, nonce);
        if (_hardware is { } hardware)
        {
            if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(plaintext), ref MemoryMarshal.GetReference(ciphertext)))
            {
                plaintext.CopyTo(ciphertext);
            }
            hardware.Encrypt(nonce, ciphertext, associatedData, tag);
            return;
        }
        _aes!.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);
    }

    /// <summary>
    /// Authenticates and decrypts <paramref name="ciphertext"/> into <paramref name="plaintext"/>
    /// (same length; may be the same span). False when the tag does not verify; the plaintext
    /// span is then cleared, so no unauthenticated bytes are exposed.
    /// </summary>
    public bool Open(ReadOnlySpan<byte> iv, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, ReadOnlySpan<byte> associatedData, Span<byte> plaintext)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Validate(iv, ciphertext.Length, plaintext, tag.Length);
        RejectPartialOverlap(ciphertext, plaintext);
        Span<byte> nonce = stackalloc byte[NonceSize];
        WriteNonce(iv, nonce);
        if (_hardware is { } hardware)
        {
            if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(plaintext), ref MemoryMarshal.GetReference(ciphertext)))
            {
                ciphertext.CopyTo(plaintext);
            }
            if (hardware.Decrypt(nonce, plaintext, tag, associatedData))
            {
                return true;
            }
            plaintext.Clear();
            return false;
        }
        try
        {
            _aes!.Decrypt(nonce, ciphertext, tag, plaintext, associatedData);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            plaintext.Clear();
            return false;
        }
    }

    /// <summary>Frees the AES context and zeroes the salt.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _aes?.Dispose();
            _hardware?.Dispose();
            CryptographicOperations.ZeroMemory(_salt);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteNonce(ReadOnlySpan<byte> iv, Span<byte> nonce)
    {
        // RFC 4106 section 4: nonce = salt (4 bytes, from the key material) || IV (8 bytes, in the packet).
        _salt.CopyTo(nonce);
        iv.CopyTo(nonce[SaltSize..]);
    }

    private void Validate(ReadOnlySpan<byte> iv, int inputLength, Span<byte> output, int tagLength)
    {
        if (iv.Length != IvSize)
        {
            throw new ArgumentException($"The ESP IV is {IvSize} bytes, not {iv.Length}.", nameof(iv));
        }
        if (output.Length != inputLength)
        {
            throw new ArgumentException("Output must be as long as the input.", nameof(output));
        }
        if (tagLength != TagSizeInBytes)
        {
            throw new ArgumentException($"This key's tag is {TagSizeInBytes} bytes, not {tagLength}.", nameof(tagLength));
        }
    }

    /// <summary>In place means "output starts where input starts"; a shifted overlap is refused.</summary>
    private static void RejectPartialOverlap(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination)
    {
        if (source.Overlaps(destination, out int offset) && offset != 0)
        {
            throw new ArgumentException("Output overlaps the input at a different offset; in place requires the same start.", nameof(destination));
        }
    }
}
