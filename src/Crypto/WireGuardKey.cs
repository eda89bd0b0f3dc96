using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// A 32-byte WireGuard key (private, public or preshared). The bytes live in a pinned array
/// (so the GC never leaves copies behind when compacting) and are zeroed on Dispose or, as a
/// last resort, by the finalizer. Text forms: base64 exactly as `wg` prints and reads it, and
/// lowercase hex as the UAPI uses. Encoding, decoding and equality are constant time.
/// </summary>
public sealed class WireGuardKey : IDisposable, IEquatable<WireGuardKey>
{
    public const int Size = 32;
    private const int Base64Length = 44;
    private const int HexLength = 64;

    private readonly byte[] _bytes = GC.AllocateArray<byte>(Size, pinned: true);
    private bool _disposed;

    public WireGuardKey(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size)
        {
            throw new ArgumentException($"A WireGuard key is {Size} bytes, not {bytes.Length}.", nameof(bytes));
        }
        bytes.CopyTo(_bytes);
    }

    private WireGuardKey()
    {
    }

    ~WireGuardKey()
    {
        CryptographicOperations.ZeroMemory(_bytes);
    }

    /// <summary>A new X25519 private key, clamped like `wg genkey`.</summary>
    public static WireGuardKey GeneratePrivate()
    {
        var key = new WireGuardKey();
        X25519.GeneratePrivateKey(key._bytes);
        return key;
    }

    /// <summary>32 random bytes, like `wg genpsk`.</summary>
    public static WireGuardKey GeneratePreshared()
    {
        var key = new WireGuardKey();
        RandomNumberGenerator.Fill(key._bytes);
        return key;
    }

    /// <summary>The X25519 public key of this private key.</summary>
    public WireGuardKey DerivePublic()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var key = new WireGuardKey();
        X25519.DerivePublicKey(_bytes, key._bytes);
        return key;
    }

    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _bytes;
        }
    }

    public bool IsZero
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return X25519.IsAllZero(_bytes);
        }
    }

    /// <summary>Test hook: the raw storage, readable after Dispose to prove it was wiped.</summary>
    internal ReadOnlySpan<byte> StorageForTests => _bytes;

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            CryptographicOperations.ZeroMemory(_bytes);
            GC.SuppressFinalize(this);
        }
    }

    // ---- base64 (wg's format: 44 characters, one '=' of padding, canonical last character) ----

    /// <summary>
    /// Parses exactly `wg`'s 44-character base64 form: 43 base64 characters and '='. The last
    /// data character must carry zero low bits (the canonical encoding), as wg requires.
    /// No surrounding whitespace is accepted here; callers that read files trim first.
    /// </summary>
    public static bool TryParseBase64(string? text, out WireGuardKey? key)
    {
        key = null;
        Span<byte> bytes = stackalloc byte[Size];
        bool ok = TryDecodeBase64(text, bytes);
        if (ok)
        {
            key = new WireGuardKey(bytes);
        }
        CryptographicOperations.ZeroMemory(bytes);
        return ok;
    }

    /// <summary>
    /// Decodes <paramref name="text"/> in exactly the form <see cref="TryParseBase64(string?, out WireGuardKey?)"/>
    /// accepts (so valid text is already canonical) into <paramref name="destination"/>
    /// (<see cref="Size"/> bytes), without creating a key: for checking and comparing the
    /// thousands of public keys a cluster lists. The caller clears the bytes if they are secret.
    /// </summary>
    public static bool TryDecodeBase64(string? text, Span<byte> destination)
    {
        if (destination.Length != Size)
        {
            throw new ArgumentException($"A WireGuard key is {Size} bytes, not {destination.Length}.", nameof(destination));
        }
        if (text is null || text.Length != Base64Length || text[Base64Length - 1] != '=')
        {
            return false;
        }

        int bad = 0; // sign bit set if any character was invalid, or non-zero padding bits
        ReadOnlySpan<char> chars = text;
        for (int group = 0; group < 10; group++)
        {
            int value = DecodeBase64Quad(chars[(group * 4)..], 4);
            bad |= value;
            int o = group * 3;
            destination[o] = (byte)(value >> 16);
            destination[o + 1] = (byte)(value >> 8);
            destination[o + 2] = (byte)value;
        }
        // Final quad: three data characters + '=' carrying 16 bits; the remaining 2 bits must be 0.
        int last = DecodeBase64Quad(chars[40..], 3);
        bad |= last | -(last & 0xff); // negative if invalid, or if the unused low bits are not zero
        destination[30] = (byte)(last >> 16);
        destination[31] = (byte)(last >> 8);
        return bad >= 0;
    }

    /// <summary>
    /// Decodes `count` base64 characters (the rest of the quad treated as 'A' = 0) into a
    /// 24-bit value; the result is negative if any character is outside the alphabet.
    /// Branch-free and table-free, so the time taken does not depend on the key.
    /// </summary>
    private static int DecodeBase64Quad(ReadOnlySpan<char> quad, int count)
    {
        int value = 0;
        for (int i = 0; i < 4; i++)
        {
            int c = i < count ? quad[i] : 'A';
            value |= DecodeBase64Char(c) << (18 - 6 * i);
        }
        return value;
    }

    /// <summary>-1 when c is in [lo, hi], else 0 (works for any int c).</summary>
    private static int InRange(int c, int lo, int hi) => ((lo - 1 - c) & (c - (hi + 1))) >> 31;

    /// <summary>0..63 for a base64 character, -1 otherwise (then the quad value goes negative).</summary>
    private static int DecodeBase64Char(int c)
    {
        return -1
            + (InRange(c, 'A', 'Z') & (c - 'A' + 1))
            + (InRange(c, 'a', 'z') & (c - 'a' + 26 + 1))
            + (InRange(c, '0', '9') & (c - '0' + 52 + 1))
            + (InRange(c, '+', '+') & (62 + 1))
            + (InRange(c, '/', '/') & (63 + 1));
    }

    /// <summary>6-bit value to its base64 character, without branches or tables.</summary>
    private static char EncodeBase64Char(int v)
    {
        // Start at 'A'; shift into 'a'.. for 26.., '0'.. for 52.., then '+' (62) and '/' (63).
        int c = v + 'A'
            + (((25 - v) >> 31) & ('a' - 26 - 'A'))
            + (((51 - v) >> 31) & ('0' - 52 - ('a' - 26)))
            + (((61 - v) >> 31) & ('+' - 62 - ('0' - 52)))
            + (((62 - v) >> 31) & ('/' - 63 - ('+' - 62)));
        return (char)c;
    }

    public string ToBase64()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return string.Create(Base64Length, _bytes, static (chars, bytes) =>
        {
            for (int group = 0; group < 10; group++)
            {
                int i = group * 3;
                int value = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
                int o = group * 4;
                chars[o] = EncodeBase64Char((value >> 18) & 63);
                chars[o + 1] = EncodeBase64Char((value >> 12) & 63);
                chars[o + 2] = EncodeBase64Char((value >> 6) & 63);
                chars[o + 3] = EncodeBase64Char(value & 63);
            }
            int last = (bytes[30] << 16) | (bytes[31] << 8);
            chars[40] = EncodeBase64Char((last >> 18) & 63);
            chars[41] = EncodeBase64Char((last >> 12) & 63);
            chars[42] = EncodeBase64Char((last >> 6) & 63);
            chars[43] = '=';
        });
    }

    // ---- hex (UAPI) ----

    /// <summary>Parses 64 hex digits (either case), as the UAPI carries keys.</summary>
    public static bool TryParseHex(string? text, out WireGuardKey? key)
    {
        key = null;
        if (text is null || text.Length != HexLength)
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[Size];
        int bad = 0;
        for (int i = 0; i < Size; i++)
        {
            int hi = DecodeHexChar(text[2 * i]);
            int lo = DecodeHexChar(text[2 * i + 1]);
            bad |= hi | lo;
            bytes[i] = (byte)((hi << 4) | (lo & 15));
        }
        bool ok = bad >= 0;
        if (ok)
        {
            key = new WireGuardKey(bytes);
        }
        CryptographicOperations.ZeroMemory(bytes);
        return ok;
    }

    /// <summary>0..15 for a hex digit, -1 otherwise; branch-free.</summary>
    private static int DecodeHexChar(int c)
    {
        return -1
            + (InRange(c, '0', '9') & (c - '0' + 1))
            + (InRange(c, 'a', 'f') & (c - 'a' + 10 + 1))
            + (InRange(c, 'A', 'F') & (c - 'A' + 10 + 1));
    }

    public string ToHex()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return string.Create(HexLength, _bytes, static (chars, bytes) =>
        {
            for (int i = 0; i < Size; i++)
            {
                chars[2 * i] = EncodeHexNibble(bytes[i] >> 4);
                chars[2 * i + 1] = EncodeHexNibble(bytes[i] & 15);
            }
        });
    }

    private static char EncodeHexNibble(int n) => (char)(n + '0' + (((9 - n) >> 31) & ('a' - '0' - 10)));

    // ---- equality ----

    public bool Equals(WireGuardKey? other)
    {
        if (other is null)
        {
            return false;
        }
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(other._disposed, other);
        return CryptographicOperations.FixedTimeEquals(_bytes, other._bytes);
    }

    public override bool Equals(object? obj) => obj is WireGuardKey other && Equals(other);

    /// <summary>
    /// Derived from the key bytes through <see cref="HashCode"/>, whose seed is random per
    /// process, so public keys can index dictionaries without exposing the bytes.
    /// </summary>
    public override int GetHashCode()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(_bytes);
        return HashCode.Combine(words[0], words[1], words[2], words[3]);
    }

    /// <summary>Never the key material (keys end up in logs through ToString).</summary>
    public override string ToString() => _disposed ? "WireGuardKey(disposed)" : "WireGuardKey(…)";
}
