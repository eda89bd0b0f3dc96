using System.Runtime.InteropServices;

namespace Gateway.Crypto.Interop;

/// <summary>
/// OpenSSL 3's libcrypto, which .NET itself loads for System.Security.Cryptography on Linux.
/// Gateway calls its EVP ChaCha20-Poly1305 for transport data (see <see cref="OpenSslChaCha20Poly1305"/>):
/// OpenSSL's AVX2 ChaCha20 and Poly1305 are faster than libsodium's on this class of CPU, and a
/// context keyed once needs only a new nonce per packet.
/// </summary>
internal static unsafe partial class LibCrypto
{
    public const string Library = "libcrypto.so.3";

    /// <summary>EVP_CTRL_AEAD_GET_TAG and EVP_CTRL_AEAD_SET_TAG (openssl/evp.h).</summary>
    public const int CtrlAeadGetTag = 0x10, CtrlAeadSetTag = 0x11;

    [LibraryImport(Library, EntryPoint = "EVP_chacha20_poly1305")]
    public static partial nint EvpChaCha20Poly1305();

    [LibraryImport(Library, EntryPoint = "EVP_CIPHER_CTX_new")]
    public static partial nint EvpCipherCtxNew();

    /// <summary>Frees the context; OpenSSL's provider clears its key and state before freeing.</summary>
    [LibraryImport(Library, EntryPoint = "EVP_CIPHER_CTX_free")]
    public static partial void EvpCipherCtxFree(nint ctx);

    [LibraryImport(Library, EntryPoint = "EVP_CipherInit_ex")]
    public static partial int EvpCipherInitEx(nint ctx, nint cipher, nint engine, byte* key, byte* iv, int enc);

    [LibraryImport(Library, EntryPoint = "EVP_CipherUpdate")]
    public static partial int EvpCipherUpdate(nint ctx, byte* output, int* outputLength, byte* input, int inputLength);

    [LibraryImport(Library, EntryPoint = "EVP_CipherFinal_ex")]
    public static partial int EvpCipherFinalEx(nint ctx, byte* output, int* outputLength);

    [LibraryImport(Library, EntryPoint = "EVP_CIPHER_CTX_ctrl")]
    public static partial int EvpCipherCtxCtrl(nint ctx, int type, int arg, byte* ptr);
}
