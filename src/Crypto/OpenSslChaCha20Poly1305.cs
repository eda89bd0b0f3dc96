using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Gateway.Crypto.Interop;

namespace Gateway.Crypto;

/// <summary>
/// One ChaCha20-Poly1305 key held in OpenSSL EVP contexts, each keyed once, so a packet costs a
/// nonce, an update and the tag. A context holds per-message state, so each concurrent caller
/// rents its own from a small per-key pool (a slot per cache line; a thread starts at its own
/// slot, so the crypto workers do not share lines). Disposing frees every context (OpenSSL clears
/// the key schedule) and zeroes the raw key; it must not race with a call in flight, which the
/// tunnel's keypair reference count guarantees.
/// </summary>
[SkipLocalsInit]
internal sealed unsafe class OpenSslChaCha20Poly1305 : IDisposable
{
    internal const string BackendEnvironmentVariable = "GATEWAY_AEAD";
    private const int SlotStride = 8; // nint slots 64 bytes apart
    // One per crypto worker (one per CPU by default) plus the node's TUN and UDP reader threads,
    // which seal and open inline when the workers are busy: each such thread starts at a slot of its own.
    private static readonly int s_slotCount = Math.Clamp(Environment.ProcessorCount + 2, 4, 16);
    private static readonly nint s_cipher;
    private static int s_nextThreadSlot;
    [ThreadStatic] private static int t_slot; // 1-based; 0 = not assigned yet

    /// <summary>True when libcrypto 3 is present, offers ChaCha20-Poly1305 and passes RFC 8439's
    /// vector both ways, and <c>GATEWAY_AEAD</c> is not <c>libsodium</c>.</summary>
    internal static bool IsSupported { get; }

    static OpenSslChaCha20Poly1305()
    {
        IsSupported = Probe(out s_cipher);
    }

    private readonly nint[] _pool = new nint[s_slotCount * SlotStride];
    private byte* _key;

    internal OpenSslChaCha20Poly1305(ReadOnlySpan<byte> key) : this(key, probing: false)
    {
    }

    /// <summary>The probe (<paramref name="probing"/>) runs before <see cref="IsSupported"/> is known.</summary>
    private OpenSslChaCha20Poly1305(ReadOnlySpan<byte> key, bool probing)
    {
        if (!probing && !IsSupported) throw new PlatformNotSupportedException("OpenSSL's ChaCha20-Poly1305 is not available.");
        if (key.Length != ChaCha20Poly1305Key.KeySize) throw new ArgumentException($"ChaCha20-Poly1305 key must be {ChaCha20Poly1305Key.KeySize} bytes, not {key.Length}.", nameof(key));
        _key = (byte*)NativeMemory.Alloc(ChaCha20Poly1305Key.KeySize);
        key.CopyTo(new Span<byte>(_key, ChaCha20Poly1305Key.KeySize));
    }

    ~OpenSslChaCha20Poly1305() => Free();

    /// <summary>Seals <paramref name="plaintext"/> into <paramref name="destination"/> (plaintext + 16-byte tag); in place when both start at the same byte.</summary>
    internal void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associatedData, Span<byte> destination)
    {
        nint ctx = Rent();
        bool ok = false;
        try
        {
            fixed (byte* n = nonce)
            fixed (byte* p = plaintext)
            fixed (byte* a = associatedData)
            fixed (byte* d = destination)
            {
                int written;
                byte* tag = d + plaintext.Length;
                ok = LibCrypto.EvpCipherInitEx(ctx, 0, 0, null, n, 1) == 1
                     && (associatedData.Length == 0 || LibCrypto.EvpCipherUpdate(ctx, null, &written, a, associatedData.Length) == 1)
                     && (plaintext.Length == 0 || LibCrypto.EvpCipherUpdate(ctx, d, &written, p, plaintext.Length) == 1)
                     && LibCrypto.EvpCipherFinalEx(ctx, tag, &written) == 1
                     && LibCrypto.EvpCipherCtxCtrl(ctx, LibCrypto.CtrlAeadGetTag, ChaCha20Poly1305Key.TagSize, tag) == 1;
            }
        }
        finally
        {
            Return(ctx, ok);
        }
        if (!ok)
        {
            CryptographicOperations.ZeroMemory(destination);
            throw new CryptographicException("OpenSSL's ChaCha20-Poly1305 seal failed.");
        }
    }

    /// <summary>Opens <paramref name="ciphertextAndTag"/> into <paramref name="destination"/>; false (and
    /// <paramref name="destination"/> zeroed) when the tag does not verify.</summary>
    internal bool Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertextAndTag, ReadOnlySpan<byte> associatedData, Span<byte> destination)
    {
        int length = ciphertextAndTag.Length - ChaCha20Poly1305Key.TagSize;
        nint ctx = Rent();
        bool ok = false;
        try
        {
            byte* scratch = stackalloc byte[16];
            fixed (byte* n = nonce)
            fixed (byte* c = ciphertextAndTag)
            fixed (byte* a = associatedData)
            fixed (byte* d = destination)
            {
                int written;
                ok = LibCrypto.EvpCipherInitEx(ctx, 0, 0, null, n, 0) == 1
                     && LibCrypto.EvpCipherCtxCtrl(ctx, LibCrypto.CtrlAeadSetTag, ChaCha20Poly1305Key.TagSize, c + length) == 1
                     && (associatedData.Length == 0 || LibCrypto.EvpCipherUpdate(ctx, null, &written, a, associatedData.Length) == 1)
                     && (length == 0 || LibCrypto.EvpCipherUpdate(ctx, d, &written, c, length) == 1)
                     && LibCrypto.EvpCipherFinalEx(ctx, scratch, &written) == 1;
            }
        }
        finally
        {
            // A failed tag check leaves the context reusable: the next nonce starts a new message.
            Return(ctx, healthy: true);
        }
        if (!ok)
        {
            // As libsodium: no unverified plaintext is left behind.
            CryptographicOperations.ZeroMemory(destination);
        }
        return ok;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        for (int i = 0; i < _pool.Length; i += SlotStride)
        {
            nint ctx = Interlocked.Exchange(ref _pool[i], 0);
            if (ctx != 0) LibCrypto.EvpCipherCtxFree(ctx);
        }
        byte* key = _key;
        if (key != null)
        {
            _key = null;
            CryptographicOperations.ZeroMemory(new Span<byte>(key, ChaCha20Poly1305Key.KeySize));
            NativeMemory.Free(key);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint Rent()
    {
        int start = t_slot;
        if (start == 0) start = t_slot = (int)((uint)Interlocked.Increment(ref s_nextThreadSlot) % (uint)s_slotCount) + 1;
        var pool = _pool;
        for (int k = 0, i = (start - 1) * SlotStride; k < s_slotCount; k++)
        {
            nint ctx = Interlocked.Exchange(ref pool[i], 0);
            if (ctx != 0) return ctx;
            i += SlotStride;
            if (i == pool.Length) i = 0;
        }
        return NewContext();
    }

    private void Return(nint ctx, bool healthy)
    {
        if (healthy)
        {
            var pool = _pool;
            for (int k = 0, i = (t_slot - 1) * SlotStride; k < s_slotCount; k++)
            {
                if (Interlocked.CompareExchange(ref pool[i], ctx, 0) == 0) return;
                i += SlotStride;
                if (i == pool.Length) i = 0;
            }
        }
        LibCrypto.EvpCipherCtxFree(ctx);
    }

    private nint NewContext()
    {
        ObjectDisposedException.ThrowIf(_key == null, this);
        nint ctx = LibCrypto.EvpCipherCtxNew();
        if (ctx == 0) throw new OutOfMemoryException("EVP_CIPHER_CTX_new failed.");
        if (LibCrypto.EvpCipherInitEx(ctx, s_cipher, 0, _key, null, 1) != 1)
        {
            LibCrypto.EvpCipherCtxFree(ctx);
            throw new CryptographicException("OpenSSL refused a ChaCha20-Poly1305 key.");
        }
        return ctx;
    }

    private static bool Probe(out nint cipher)
    {
        cipher = 0;
        if (string.Equals(Environment.GetEnvironmentVariable(BackendEnvironmentVariable), "libsodium", StringComparison.OrdinalIgnoreCase)) return false;
        if (!NativeLibrary.TryLoad(LibCrypto.Library, typeof(OpenSslChaCha20Poly1305).Assembly, null, out _)) return false;
        try
        {
            cipher = LibCrypto.EvpChaCha20Poly1305();
            if (cipher == 0) return false;
            // RFC 8439 section 2.8.2, sealed and opened through this class before it is trusted.
            var v = CryptoSelfTest.Rfc8439Vector();
            byte[] sealedBytes = new byte[v.Plaintext.Length + ChaCha20Poly1305Key.TagSize];
            using var probe = new OpenSslChaCha20Poly1305(v.Key, probing: true);
            probe.Seal(v.Nonce, v.Plaintext, v.Aad, sealedBytes);
            if (!sealedBytes.AsSpan().SequenceEqual(v.Expected)) return false;
            byte[] opened = new byte[v.Plaintext.Length];
            if (!probe.Open(v.Nonce, sealedBytes, v.Aad, opened) || !opened.AsSpan().SequenceEqual(v.Plaintext)) return false;
            sealedBytes[0] ^= 1;
            return !probe.Open(v.Nonce, sealedBytes, v.Aad, opened);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CryptographicException)
        {
            return false;
        }
    }

}
