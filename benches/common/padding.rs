//! Product pages grown to a real shop's size: shops wrap the product in related-product
//! cards, so the fixtures (a few KB each) are padded to about 100 KB for the extraction and
//! poll benchmarks, which must measure the same pages.

/// About the size of a real product page.
pub const PAGE_BYTES: usize = 100_000;

/// `body` grown to [`PAGE_BYTES`] with related-product cards before `</body>`.
pub fn pad(body: &[u8]) -> Vec<u8> {
    let cut = memchr::memmem::rfind(body, b"</body>").unwrap_or(body.len());
    let mut page = body[..cut].to_vec();
    let mut i = 0;
    while page.len() < PAGE_BYTES {
        i += 1;
        page.extend_from_slice(
            format!(
                r#"<div class="product-card"><a href="/related/{i}" class="card-link"><img src="/img/{i}.jpg" alt="Related item {i}" loading="lazy" width="240" height="240"></a><h3 class="card-title">Related item {i} &amp; accessories</h3><div class="card-rating" aria-label="4.{r} out of 5">★★★★☆ <span>({i})</span></div><div class="card-price"><span class="price-now">{d}.99</span> <s class="price-was">{w}.99</s></div><button type="button" class="add-to-cart" data-sku="SKU-{i}">Add to cart</button></div>
"#,
                r = i % 10,
                d = 10 + i % 500,
                w = 20 + i % 500,
            )
            .as_bytes(),
        );
    }
    page.extend_from_slice(&body[cut..]);
    page
}
